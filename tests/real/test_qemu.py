"""crane against a real libvirtd with QEMU: guests boot, lease addresses, answer HTTP; updates, replacements, drift
and destroy behave as the plan says. The tests of this module run in order on one applied stack."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.providers.metrics import MemoryUsage
from tests.conftest import ProjectDir, ok
from tests.real.conftest import tinyweb_project
from tests.real.host import REAL_URI, RealHost, dnsmasq_for, http_get
from tests.waiting import wait_until

PREFIX = "crt-"
SUBNET = "10.231.0.0/24"


def outputs(project: ProjectDir) -> dict[str, str]:
    return dict(json.loads(ok(project, "output", "--json")))


@pytest.fixture(scope="module")
def web(real_host: RealHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    real_host.sweep(PREFIX)
    project = tinyweb_project(tmp_path_factory.mktemp("real"), real_host, prefix=PREFIX, subnet=SUBNET)
    ok(project, "apply", "--auto-approve")
    yield project
    project.crane("destroy", "--auto-approve")
    real_host.sweep(PREFIX)


def test_every_web_vm_boots_leases_an_address_and_answers_http(web: ProjectDir, real_host: RealHost) -> None:
    found = real_host.names(PREFIX)
    assert found == {"domains": ["crt-web-1", "crt-web-2"], "networks": ["crt-lan"], "pools": ["crt-pool"],
                     "volumes": ["crt-web-1-data", "crt-web-2-data"]}
    addresses = outputs(web)
    assert sorted(addresses) == ["web-1-ipv4", "web-2-ipv4"]
    for name, address in addresses.items():
        assert address and address.startswith("10.231.0."), (name, address)
        assert http_get(address, timeout=30).strip() == "crane test guest"
    # the data disks are real files in the directory pool, attached to the running guests
    for i in (1, 2):
        dom = real_host.conn.lookupByName(f"crt-web-{i}")
        assert dom.isActive()
        assert f"<source pool='crt-pool' volume='crt-web-{i}-data'" in dom.XMLDesc(0)
        assert dom.blockInfo("vda")[0] == 1024**3  # QEMU opened it: capacity as the guest sees it
    # the pool is the stack's own: crane defined it and libvirt made its directory
    assert real_host.conn.storagePoolLookupByName("crt-pool").isActive()
    assert Path("/var/lib/crt-pool/crt-web-1-data").is_file()


def test_the_applied_stack_shows_no_changes(web: ProjectDir) -> None:
    result = web.crane("plan", "--detailed-exitcode")
    assert result.code == 0, result.out


def test_same_stack_on_the_sandbox_plans_the_same_resources(web: ProjectDir, real_host: RealHost,
                                                            tmp_path: Path) -> None:
    sandbox = tinyweb_project(tmp_path, real_host, prefix=PREFIX, subnet=SUBNET, real=False)
    ok(sandbox, "apply", "--auto-approve")
    assert ok(sandbox, "state", "list").split() == ok(web, "state", "list").split()
    simulated = outputs(sandbox)
    assert sorted(simulated) == ["web-1-ipv4", "web-2-ipv4"]
    assert all(a.startswith("10.231.0.") for a in simulated.values())


def test_memory_reading_follows_the_guest(web: ProjectDir, real_host: RealHost, tmp_path: Path) -> None:
    address = outputs(web)["web-1-ipv4"]
    provider = LibvirtProvider(REAL_URI, sandbox_dir=tmp_path, mutating=False)
    try:
        def used_after(fill_mib: int, expect: Callable[[float], bool]) -> float:
            assert f"filled {fill_mib} MiB" in http_get(address, f"/cgi-bin/fill?{fill_mib}")
            last: list[MemoryUsage | None] = []

            def expected() -> MemoryUsage | None:
                reading = provider.memory_usage("vm", "crt-web-1")
                last[:] = [reading]
                return reading if reading is not None and expect(reading.used_mib) else None

            # the balloon refreshes its statistics every few seconds: twice a second is often enough to ask
            found = wait_until(expected, 15, f"the memory reading to follow a {fill_mib} MiB fill", every=0.5,
                               detail=lambda: f"reading stayed at {last[0] if last else None}")
            assert found is not None
            return found.used_mib

        base = provider.memory_usage("vm", "crt-web-1")
        # total: what the guest sees of its 128 MiB once the kernel took its share (the balloon holds the rest of 256)
        assert base is not None and 64 < base.total_mib <= 128, base
        # 40 MiB: well inside what the guest has free, so its OOM killer leaves httpd alone
        high = used_after(40, lambda used: used > base.used_mib + 30)
        low = used_after(0, lambda used: used < high - 30)
        assert low < base.used_mib + 10
    finally:
        provider.close()


def test_update_in_place_changes_the_running_guest(web: ProjectDir, real_host: RealHost) -> None:
    dom = real_host.conn.lookupByName("crt-web-1")
    before_id, before_uuid = dom.ID(), dom.UUIDString()
    assert not dom.autostart()
    change = ("--var", "memory_mib=192", "--var", "autostart=true", "--var", "vcpus=2")
    plan = ok(web, "plan", *change)
    assert "~ vm.crt-web-1  autostart: false → true" in plan and "memory_mib: 128 → 192" in plan, plan
    assert "vcpus: 1 → 2\n" in plan and "-/+" not in plan and "restarts" not in plan, plan
    ok(web, "apply", "--auto-approve", *change)
    dom = real_host.conn.lookupByName("crt-web-1")
    assert (dom.ID(), dom.UUIDString()) == (before_id, before_uuid)  # the same QEMU process: not restarted
    assert dom.autostart()
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2  # hot-plugged
    wait_until(lambda: dom.info()[2] == 192 * 1024, 15, "the balloon to give the guest its 192 MiB",
               detail=dom.info)
    persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<currentMemory unit='KiB'>196608</currentMemory>" in persistent
    # make the config say what was applied, so the rest of the module starts from it
    web.write_config((web.root / "crane.toml").read_text().replace("default = 128", "default = 192")
                     .replace("default = false", "default = true").replace("vcpus = { type = \"int\", default = 1",
                                                                          "vcpus = { type = \"int\", default = 2"))
    assert web.crane("plan", "--detailed-exitcode").code == 0


def test_what_libvirt_cannot_change_live_restarts_the_guest(web: ProjectDir, real_host: RealHost) -> None:
    dom = real_host.conn.lookupByName("crt-web-2")
    before_id, before_uuid = dom.ID(), dom.UUIDString()
    change = ("--var", "cmdline=console=ttyS0 quiet", "--var", "vcpus=1")
    plan = ok(web, "plan", *change)
    assert "~ vm.crt-web-2  cmdline: console=ttyS0 → console=ttyS0 quiet  # restarts the guest" in plan, plan
    assert "~ vm.crt-web-2  vcpus: 2 → 1  # restarts the guest" in plan and "-/+" not in plan, plan
    assert "~ vm.crt-web-1  vcpus: 2 → 1  # restarts the guest" in plan  # the variable sets both
    ok(web, "apply", "--auto-approve", *change)
    dom = real_host.conn.lookupByName("crt-web-2")
    assert dom.UUIDString() == before_uuid and dom.isActive() and dom.ID() != before_id  # restarted, not replaced
    assert "quiet" in dom.XMLDesc(0) and dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 1
    # apply waited for the lease the restarted guest took, not the old boot's still in dnsmasq: it answers now
    assert http_get(outputs(web)["web-2-ipv4"], timeout=5).strip() == "crane test guest"
    web.write_config((web.root / "crane.toml").read_text().replace('"console=ttyS0"', '"console=ttyS0 quiet"')
                     .replace("vcpus = { type = \"int\", default = 2", "vcpus = { type = \"int\", default = 1"))
    assert web.crane("plan", "--detailed-exitcode").code == 0


def test_replace_makes_a_new_domain_that_boots(web: ProjectDir, real_host: RealHost) -> None:
    old_uuid = real_host.conn.lookupByName("crt-web-2").UUIDString()
    plan = ok(web, "plan", "--replace", "vm.crt-web-2")
    assert "-/+ vm.crt-web-2" in plan, plan
    ok(web, "apply", "--auto-approve", "--replace", "vm.crt-web-2")
    dom = real_host.conn.lookupByName("crt-web-2")
    assert dom.UUIDString() != old_uuid and dom.isActive()
    # `crane apply && curl $(crane output web-2-ipv4)`: the new guest holds its own lease when apply returns
    assert http_get(outputs(web)["web-2-ipv4"], timeout=5).strip() == "crane test guest"


def test_drift_made_with_virsh_is_detected_and_corrected(web: ProjectDir, real_host: RealHost) -> None:
    virsh = ["virsh", "-c", REAL_URI]
    subprocess.run([*virsh, "destroy", "crt-web-2"], check=True, capture_output=True)
    subprocess.run([*virsh, "setmaxmem", "crt-web-1", "224M", "--config"], check=True, capture_output=True)
    subprocess.run([*virsh, "autostart", "--disable", "crt-web-2"], check=True, capture_output=True)
    plan = web.crane("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    drift = plan.out.split("crane will make these changes")[0]
    assert "! vm.crt-web-2  running: true → false" in drift and "autostart: true → false" in drift, drift
    assert "! vm.crt-web-1  max_memory_mib: 256 → 224" in drift, drift
    ok(web, "apply", "--auto-approve")
    assert real_host.conn.lookupByName("crt-web-2").isActive()
    assert real_host.conn.lookupByName("crt-web-2").autostart()
    assert "<memory unit='KiB'>262144</memory>" in real_host.conn.lookupByName("crt-web-1").XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    for address in outputs(web).values():
        assert http_get(address, timeout=30).strip() == "crane test guest"
    assert web.crane("plan", "--detailed-exitcode").code == 0


def test_destroy_leaves_nothing_behind(web: ProjectDir, real_host: RealHost) -> None:
    bridge = json.loads(ok(web, "state", "show", "network.crt-lan"))["outputs"]["bridge_name"]
    assert bridge and Path(f"/sys/class/net/{bridge}").exists()
    assert dnsmasq_for("crt-lan")
    ok(web, "destroy", "--auto-approve")
    assert real_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert not Path("/var/lib/crt-pool").exists()  # crane made the pool's directory, so destroy removed it
    assert not Path(f"/sys/class/net/{bridge}").exists()
    wait_until(lambda: not dnsmasq_for("crt-lan"), 10, "the network's dnsmasq to exit",
               detail=lambda: dnsmasq_for("crt-lan"))
    assert ok(web, "state", "list") == ""


def test_sigkill_mid_apply_then_apply_converges(real_host: RealHost, tmp_path: Path) -> None:
    prefix = "crk-"
    real_host.sweep(prefix)
    project = tinyweb_project(tmp_path, real_host, prefix=prefix, subnet="10.232.0.0/24", web_count=3)
    try:
        # killed right after the second object was created on the host and before crane recorded it
        killed = project.crane("apply", "--auto-approve", "--parallelism", "1",
                               env={"CRANE_FAILPOINT": "after-mutation:4"})
        assert killed.code == -signal.SIGKILL
        assert 0 < sum(len(v) for v in real_host.names(prefix).values()) < 8
        ok(project, "apply", "--auto-approve")
        assert real_host.names(prefix) == {
            "domains": ["crk-web-1", "crk-web-2", "crk-web-3"], "networks": ["crk-lan"], "pools": ["crk-pool"],
            "volumes": ["crk-web-1-data", "crk-web-2-data", "crk-web-3-data"]}
        assert len(ok(project, "state", "list").split()) == 8
        assert project.crane("plan", "--detailed-exitcode").code == 0
        ok(project, "destroy", "--auto-approve")
        assert real_host.names(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    finally:
        real_host.sweep(prefix)


@pytest.mark.parametrize("mode", ["nat", "isolated", "open"])
def test_network_modes_start_on_the_real_host(real_host: RealHost, tmp_path: Path, mode: str) -> None:
    project = ProjectDir(tmp_path)
    project.write_config(f"""
        [stacks.net]
        file = "stacks/net.py"
        uri = "{REAL_URI}"
    """)
    project.write_stack(f"""
        from crane_iac import Network
        Network("crn-{mode}", mode="{mode}", ipv4="10.233.{["nat", "isolated", "open"].index(mode)}.0/24",
                ipv6="fd00:233::/64")
    """, name="net.py")
    try:
        ok(project, "apply", "--auto-approve")
        net = real_host.conn.networkLookupByName(f"crn-{mode}")
        assert net.isActive() and net.autostart()
        assert dnsmasq_for(f"crn-{mode}")
        assert project.crane("plan", "--detailed-exitcode").code == 0
        ok(project, "destroy", "--auto-approve")
        assert not [n for n in real_host.conn.listAllNetworks(0) if n.name() == f"crn-{mode}"]
    finally:
        real_host.sweep(f"crn-{mode}")
