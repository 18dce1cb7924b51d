"""Endpoints that share a kind: a container on one endpoint uses, by its name, a network made through another, as a
container on lxc:///system uses a network of qemu:///system on one libvirtd (tests/real/test_mixed.py does that).

libvirt's test driver stands in for the daemon: ``test:///default`` is one hypervisor for every connection of the
process, so two endpoints on it share every kind (providers/libvirt/sharing.py), and each endpoint reads every
object twice over, as lxc:///system reads qemu:///system's networks. The hypervisor lives while a connection to it
is open: the fixture holds one for the test (and looks through it), and it is gone with the test."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.engine.apply import StepEvent
from crane_iac.engine.workspace import PlanOptions, Workspace
from crane_iac.errors import DiagnosticsError
from crane_iac.objects import Verb
from crane_iac.providers import registry
from tests.conftest import ProjectDir, assert_clean_error

SHARED = """
[stacks.main]
file = "stacks/main.py"
[stacks.main.providers.qemu-ep]
uri = "test:///default"
address_timeout = 0
[stacks.main.providers.lxc-ep]
uri = "test:///default"
address_timeout = 0
"""

STACK = """
from crane_iac import VM, Container, IPv4Pool, Network, export

pool = IPv4Pool("mix-pool", cidr="10.240.0.0/16", subnet_prefixlen=24)
lan = Network("mix-lan", mode="nat", ipv4=pool.subnet(), provider="qemu-ep")
guest = VM("mix-vm", vcpus=1, memory_mib=128, networks=[lan], provider="qemu-ep")
box = Container("mix-ct", networks=[lan], init=["/bin/sh"], memory_mib=64, provider="lxc-ep")
export("vm", guest.nic_ipv4)
export("ct", box.addresses)
"""


@pytest.fixture
def hypervisor() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open("test:///default")
    before = names(conn)
    yield conn
    assert names(conn) == before  # what the test made is gone
    conn.close()


def names(conn: libvirt.virConnect) -> dict[str, list[str]]:
    return {"domains": sorted(d.name() for d in conn.listAllDomains(0)),
            "networks": sorted(n.name() for n in conn.listAllNetworks(0))}


def project(root: Path, stack: str = STACK, config: str = SHARED) -> Path:
    (root / "crane.toml").write_text(textwrap.dedent(config))
    (root / "stacks").mkdir(exist_ok=True)
    (root / "stacks" / "main.py").write_text(textwrap.dedent(stack))
    return root


def apply(ws: Workspace, options: PlanOptions | None = None) -> list[StepEvent]:
    events: list[StepEvent] = []
    with ws.locked("apply") as run:
        result = run.apply(run.plan(options or PlanOptions()), report=events.append)
    assert result.ok, result.failed
    return events


def position(events: list[StepEvent], address: str, verb: Verb) -> int:
    return next(i for i, e in enumerate(events) if (e.address, e.verb) == (address, verb))


def test_a_container_uses_a_network_the_other_endpoint_owns(hypervisor: libvirt.virConnect,
                                                            tmp_path: Path) -> None:
    root = project(tmp_path)
    planned = Workspace.open(root).plan()
    changes = {c.address: c for c in planned.changes}
    assert {a: c.endpoint for a, c in changes.items()} == {
        "network.mix-lan": "qemu-ep", "vm.mix-vm": "qemu-ep", "container.mix-ct": "lxc-ep"}
    assert "network.mix-lan" in changes["container.mix-ct"].dependencies  # ordered across endpoints
    assert changes["container.mix-ct"].after["nics"][0]["network"] == "mix-lan"  # by its name

    made = apply(Workspace.open(root))
    assert position(made, "network.mix-lan", Verb.CREATED) < position(made, "container.mix-ct", Verb.CREATING)
    now = names(hypervisor)
    assert "mix-lan" in now["networks"] and {"mix-vm", "mix-ct"} <= set(now["domains"])
    outputs = Workspace.open(root).outputs()
    assert outputs == {"vm": ["10.240.0.2"], "ct": ["10.240.0.3"]}  # both leased from the network's pool
    state = Workspace.open(root).state()
    assert {a: r.endpoint for a, r in state.resources.items()} == {
        "network.mix-lan": "qemu-ep", "vm.mix-vm": "qemu-ep", "container.mix-ct": "lxc-ep"}

    # every object is read through both endpoints; each is the stack's once, on its owner: nothing to do, nothing
    # to refresh (read twice, the network would be a second object of the stack's, and deleted)
    assert not Workspace.open(root).plan().has_changes
    report = Workspace.open(root).refresh()
    assert report.committed == [] and report.resources == 3

    gone = apply(Workspace.open(root), PlanOptions(destroy=True))
    assert sorted(e.address for e in gone if e.verb is Verb.DELETED) == [
        "container.mix-ct", "network.mix-lan", "vm.mix-vm"]  # three deletes, not six
    network_goes = position(gone, "network.mix-lan", Verb.DELETING)
    assert position(gone, "container.mix-ct", Verb.DELETED) < network_goes  # its users first, across endpoints
    assert position(gone, "vm.mix-vm", Verb.DELETED) < network_goes
    assert Workspace.open(root).state().resources == {}


def test_a_lost_record_is_adopted_on_the_endpoint_the_stack_puts_it(hypervisor: libvirt.virConnect,
                                                                    tmp_path: Path) -> None:
    stack = STACK.replace('ipv4=pool.subnet()', 'ipv4="10.241.0.0/24"').replace('init=["/bin/sh"]',
                                                                               'ipv4=["10.241.0.9"], init=["/bin/sh"]')
    root = project(tmp_path, stack)
    apply(Workspace.open(root))
    (root / ".crane" / "state.db").unlink()  # crane made them and no longer knows: their metadata says whose they are
    planned = Workspace.open(root).plan()
    assert {(c.address, c.endpoint, c.reason) for c in planned.changes if c.reason is not None} == {
        ("network.mix-lan", "qemu-ep", "adopted: created by crane but not recorded"),
        ("vm.mix-vm", "qemu-ep", "adopted: created by crane but not recorded"),
        ("container.mix-ct", "lxc-ep", "adopted: created by crane but not recorded")}
    apply(Workspace.open(root))
    apply(Workspace.open(root), PlanOptions(destroy=True))


def test_a_volume_in_a_pool_the_other_endpoint_makes_in_the_same_plan(hypervisor: libvirt.virConnect,
                                                                       tmp_path: Path) -> None:
    """The volume's endpoint checks at plan time that its pool is there; the pool, made through the other endpoint
    by the same plan, is told to it (``planned_elsewhere``) before the volume is checked."""
    stack = f"""
    from crane_iac import StoragePool, Volume
    pool = StoragePool("mix-pool", path="{tmp_path / 'pool'}", provider="qemu-ep")
    Volume("mix-vol", pool=pool, capacity_gib=1, provider="lxc-ep")
    """
    root = project(tmp_path, stack)
    made = apply(Workspace.open(root))
    assert position(made, "pool.mix-pool", Verb.CREATED) < position(made, "volume.mix-vol", Verb.CREATING)
    assert "mix-vol" in [v.name() for v in hypervisor.storagePoolLookupByName("mix-pool").listAllVolumes(0)]
    assert not Workspace.open(root).plan().has_changes
    gone = apply(Workspace.open(root), PlanOptions(destroy=True))
    assert position(gone, "volume.mix-vol", Verb.DELETED) < position(gone, "pool.mix-pool", Verb.DELETING)
    assert "mix-pool" not in [p.name() for p in hypervisor.listAllStoragePools(0)]


def test_a_shared_kind_has_one_name_across_the_endpoints_sharing_it(tmp_path: Path) -> None:
    stack = """
    from crane_iac import Network
    Network("lan", mode="isolated", provider="qemu-ep")
    Network("lan-lxc", hypervisor_name="lan", mode="isolated", provider="lxc-ep")
    """
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(project(tmp_path, stack)).load()
    [problem] = caught.value.diagnostics
    assert (problem.address, problem.line) == ("network.lan-lxc", 4)
    assert "hypervisor name 'lan' is already used by network.lan" in problem.summary


CROSSING = """
from crane_iac import Container, Network
lan = Network("lan", mode="isolated", ipv4="10.242.0.0/24", provider="qemu-ep")
Container("box", networks=[lan], ipv4=["10.242.0.9"], init=["/bin/sh"], memory_mib=64, provider="lxc-ep")
"""


@pytest.mark.parametrize(("endpoints", "why"), [
    # one libvirtd's system daemon and a user's own are two daemons
    ('[stacks.main.providers.qemu-ep]\nuri = "qemu:///session"\n[stacks.main.providers.lxc-ep]\n'
     'uri = "lxc:///system"\n', "these two endpoints share no objects"),
    # two hosts
    ('[stacks.main.providers.qemu-ep]\nuri = "qemu+ssh://dc1/system"\n[stacks.main.providers.lxc-ep]\n'
     'uri = "lxc+ssh://dc2/system"\n', "these two endpoints share no objects"),
    # two sandboxes, each an endpoint's own
    ("[stacks.main.providers.qemu-ep]\n[stacks.main.providers.lxc-ep]\n", "these two endpoints share no objects"),
    # another provider type
    ('[stacks.main.providers.qemu-ep]\ntype = "memo"\n[stacks.main.providers.lxc-ep]\nuri = "lxc:///system"\n',
     "these two endpoints share no objects"),
])
def test_a_network_on_an_endpoint_that_shares_none_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    endpoints: str, why: str) -> None:
    monkeypatch.setitem(registry.BUILT_IN, "memo", "tests.engine.memory_provider:open_endpoint")
    root = project(tmp_path, CROSSING, '[stacks.main]\nfile = "stacks/main.py"\n' + endpoints)
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).load()
    [problem] = caught.value.diagnostics
    assert (problem.address, problem.line) == ("container.box", 4)
    assert problem.summary.startswith("networks: network.lan is on endpoint 'qemu-ep' and this container on "
                                      "'lxc-ep'; a resource can use by name only what is on its own endpoint or "
                                      "shared with it"), problem.summary
    assert why in problem.summary and "declare network.lan on endpoint 'lxc-ep'" in problem.summary


def test_what_one_daemon_does_not_share_is_refused(tmp_path: Path) -> None:
    """qemu:///system and lxc:///system share networks and storage, not guests: a configuration run on the
    container's endpoint cannot name the QEMU guest (it is no host of that endpoint)."""
    stack = """
    from crane_iac import VM, Configuration, Network, SshKey
    lan = Network("lan", mode="isolated", provider="qemu-ep")
    web = VM("web", vcpus=1, memory_mib=128, networks=[lan], provider="qemu-ep")
    key = SshKey("key", provider="lxc-ep")
    Configuration("setup", playbook="crane:appdomain/web.yml", hosts=[web], key=key, provider="lxc-ep")
    """
    config = ('[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.qemu-ep]\nuri = "qemu:///system"\n'
              '[stacks.main.providers.lxc-ep]\nuri = "lxc:///system"\n')
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(project(tmp_path, stack, config)).load()
    [problem] = caught.value.diagnostics
    assert (problem.address, problem.line) == ("configuration.setup", 6)
    assert "hosts: vm.web is on endpoint 'qemu-ep'" in problem.summary
    assert "these two endpoints share only cloudinit, network, pool, snapshot, volume objects" in problem.summary


def test_the_cli_names_the_line_and_touches_nothing(tmp_path: Path) -> None:
    proj = ProjectDir(tmp_path)
    proj.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.qemu-ep]\n'
                      'uri = "qemu:///session"\n[stacks.main.providers.lxc-ep]\nuri = "lxc:///system"\n')
    path = proj.write_stack(CROSSING)
    assert_clean_error(proj.crane("validate"), f"{path.resolve()}:4", "container.box",  # no connection needed
                       "these two endpoints share no objects")
    assert not (tmp_path / ".crane").exists()
