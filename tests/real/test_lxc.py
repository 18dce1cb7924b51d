"""crane against libvirt's real LXC driver (lxc:///system): containers running this machine's Python as an HTTP
server answer on their fixed addresses; plans, drift, the memory limit, a directory volume across a replacement, a
SIGKILLed apply and destroy behave as for VMs. The tests of this module run in order on one applied stack."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.providers.libvirt.endpoint import open_endpoint
from crane_iac.resources.container import nic_device
from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.real.host import LXC_URI, REAL_URI, LxcHost, http_get

PREFIX = "crl-"
#: the containers' init: an HTTP server saying its name, filling memory in a child process, and keeping files in /mnt
SERVER = '''
import http.server, os, socketserver, subprocess, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        verb, *args = self.path.strip("/").split("/")
        if verb == "alloc":  # a child that needs MIB MiB: its exit status (-9: the OOM killer took it)
            code = "data = b'x' * (%d * 1048576)" % int(args[0])
            body = str(subprocess.run([sys.executable, "-c", code]).returncode)
        elif verb == "write":
            with open("/mnt/" + args[0], "w") as out:
                out.write(args[1])
            body = "written"
        elif verb == "read":
            with open("/mnt/" + args[0]) as src:
                body = src.read()
        else:
            body = os.environ["NAME"]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
# not http.server's own server class: it looks up the host's name in DNS, which the container cannot reach
socketserver.ThreadingTCPServer(("", 8080), Handler).serve_forever()
'''
STACK = '''
from crane_iac import Container, Network, StoragePool, Volume, export

SERVER = {server!r}
lan = Network("{p}lan", mode="open", ipv4="{net}.0/24", dhcp=False)
pool = StoragePool("{p}pool", path="/var/lib/{p}pool")
data = Volume("{p}data", pool=pool, format="dir")
for i in range(1, {count} + 1):
    web = Container(f"{p}web-{{i}}", memory_mib={memory} if i == 2 else 64, networks=[lan], ipv4=[f"{net}.{{10 + i}}"],
                    init=["/usr/bin/python3", "-c", SERVER], init_env={{"NAME": f"{p}web-{{i}}"}},
                    mounts={{"/mnt": data}} if i == 1 else {{}})
    export(f"web-{{i}}", web.addresses)
'''


def write(project: ProjectDir, prefix: str, net: str, count: int, memory: int = 64) -> None:
    project.write_stack(STACK.format(server=textwrap.dedent(SERVER), p=prefix, net=net, count=count, memory=memory))


def lxc_project(root: Path, prefix: str, net: str, count: int) -> ProjectDir:
    project = ProjectDir(root)
    project.write_config(f"""
        [stacks.lxc]
        file = "stacks/main.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 2
    """)
    write(project, prefix, net, count)
    return project


def step_times(applied: str) -> dict[str, float]:
    """Seconds each step took, from apply's progress lines (``container.crl-web-1: created (0.12s)``)."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\S+): \w+ \((\d+\.\d+)s\)$", applied, re.M)}


@pytest.fixture(scope="module")
def stack(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    project = lxc_project(tmp_path_factory.mktemp("lxc"), PREFIX, "10.234.0", count=2)
    applied = ok(project, "apply", "--auto-approve")
    print("apply steps (s):", step_times(applied))
    yield project
    project.crane("destroy", "--auto-approve")
    lxc_host.sweep(PREFIX)


def test_each_container_answers_on_its_fixed_address(stack: ProjectDir, lxc_host: LxcHost) -> None:
    assert lxc_host.names(PREFIX) == {"domains": ["crl-web-1", "crl-web-2"], "networks": ["crl-lan"],
                                      "pools": ["crl-pool"], "volumes": ["crl-data"]}
    for i in (1, 2):
        assert json.loads(ok(stack, "output", f"web-{i}")) == [f"10.234.0.{10 + i}"]
        assert http_get(f"10.234.0.{10 + i}:8080", timeout=10) == f"crl-web-{i}"
        dom = lxc_host.conn.lookupByName(f"crl-web-{i}")
        assert dom.isActive() and f"<target dev='{nic_device(f'crl-web-{i}', 0)}'/>" in dom.XMLDesc(0)
    assert Path("/var/lib/crl-pool/crl-data").is_dir()  # the directory volume, made by libvirt


def test_a_second_plan_shows_no_changes(stack: ProjectDir) -> None:
    result = stack.crane("plan", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err


def test_the_memory_reading_is_the_containers_cgroup(stack: ProjectDir, lxc_host: LxcHost, tmp_path: Path) -> None:
    provider = open_endpoint({"uri": LXC_URI}, sandbox_dir=tmp_path, mutating=False)
    try:
        assert provider.reaches_guests  # this machine runs the containers
        usage = provider.memory_usage("container", "crl-web-2")
        assert usage is not None and usage.total_mib == 64
        assert 2 < usage.used_mib < 48, usage  # a Python HTTP server and its supervisor
        print(f"crl-web-2 memory: {usage}")
        # what the cgroup holds, less the page cache it could drop
        dom = lxc_host.conn.lookupByName("crl-web-2")
        cgroup = Path(f"/sys/fs/cgroup/memory/machine/lxc-{dom.ID()}-crl-web-2.libvirt-lxc")
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
        held = int((cgroup / "memory.usage_in_bytes").read_text()) - int(stat["total_inactive_file"])
        assert abs(usage.used_mib - held / 1024**2) < 2, (usage, held)
    finally:
        provider.close()
    told = open_endpoint({"uri": LXC_URI, "reach_guests": False}, sandbox_dir=tmp_path, mutating=False)
    try:
        assert not told.reaches_guests
    finally:
        told.close()


#: run in a container (its namespaces and cgroups): three processes spin on this 2-core host while the agent's Meter
#: reads the container's CPU over a 2 s window (the measurement itself, not a wait), beside the spinners' own times
BUSY = """
import json, multiprocessing, os, sys, time, types
agent = types.ModuleType("agent")  # its source comes in this program: the checkout may not be seen in the container
sys.modules["agent"] = agent
exec(compile({agent!r}, "agent.py", "exec"), agent.__dict__)
def spin():
    while True:
        pass
def times(pids):
    return sum(sum(int(f) for f in open(f"/proc/{{p}}/stat").read().rpartition(")")[2].split()[11:13])
               for p in pids) / os.sysconf("SC_CLK_TCK")
spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(3)]
for p in spinners:
    p.start()
meter = agent.Meter()
meter.cpu()
before, started = times([p.pid for p in spinners]), time.monotonic()
time.sleep(2)
cpu = meter.cpu()
used = (times([p.pid for p in spinners]) - before) / (time.monotonic() - started)
print(json.dumps({{"cpu": cpu, "cpus": meter.cpus(), "spinners": used}}))
"""


def test_a_containers_vcpus_are_its_cpu_quota_and_a_busy_loop_reads_at_most_one(stack: ProjectDir,
                                                                                 lxc_host: LxcHost) -> None:
    xml = lxc_host.conn.lookupByName("crl-web-1").XMLDesc(0)
    assert "<period>100000</period>" in xml and "<quota>100000</quota>" in xml, xml  # vcpus=1
    agent = Path(__file__).resolve().parents[2] / "crane_iac" / "appdomain" / "files" / "agent.py"
    done = subprocess.run(["virsh", "-c", LXC_URI, "lxc-enter-namespace", "crl-web-1", "--noseclabel",
                           "/usr/bin/python3", "-c", BUSY.format(agent=agent.read_text())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    reading = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"crl-web-1 busy: {reading}")
    assert reading["cpus"] == 1.0  # the quota, not the host's two CPUs
    # three spinning processes held to one CPU by the quota (the machine is shared: they may get less)
    assert 0.3 <= reading["spinners"] <= 1.1, reading
    # a fraction of what the container may use, never above 1, and the container's: what its spinners used
    assert reading["cpu"] <= 1.0 and abs(reading["cpu"] - min(reading["spinners"], 1.0)) <= 0.2, reading


def test_a_process_over_the_memory_limit_is_killed_and_the_container_stays(stack: ProjectDir,
                                                                           lxc_host: LxcHost) -> None:
    assert http_get("10.234.0.12:8080/alloc/8", timeout=20) == "0"  # within the limit
    assert http_get("10.234.0.12:8080/alloc/200", timeout=20) == str(-signal.SIGKILL)
    dom = lxc_host.conn.lookupByName("crl-web-2")
    assert dom.isActive()
    cgroup = next(Path("/sys/fs/cgroup/memory/machine").glob(f"lxc-{dom.ID()}-crl-web-2.libvirt-lxc"))
    assert "oom_kill 1" in (cgroup / "memory.oom_control").read_text()
    assert http_get("10.234.0.12:8080/", timeout=5) == "crl-web-2"


def test_a_file_in_a_directory_volume_outlives_a_replaced_container(stack: ProjectDir, lxc_host: LxcHost) -> None:
    assert http_get("10.234.0.11:8080/write/kept/hello", timeout=5) == "written"
    old = lxc_host.conn.lookupByName("crl-web-1").UUIDString()
    replaced = ok(stack, "apply", "--auto-approve", "--replace", "container.crl-web-1")
    print("replace steps (s):", step_times(replaced))
    assert lxc_host.conn.lookupByName("crl-web-1").UUIDString() != old
    assert http_get("10.234.0.11:8080/read/kept", timeout=10) == "hello"
    assert Path("/var/lib/crl-pool/crl-data/kept").read_text() == "hello"


def test_containers_destroyed_or_stopped_behind_cranes_back_are_drift_that_apply_repairs(
        stack: ProjectDir, lxc_host: LxcHost) -> None:
    lxc_host.conn.lookupByName("crl-web-1").destroy()
    gone = lxc_host.conn.lookupByName("crl-web-2")
    gone.destroy()
    gone.undefine()
    plan = stack.crane("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    drift, _, changes = plan.out.partition("crane will make these changes")
    assert "! container.crl-web-1  running: true → false" in drift, drift
    assert "! container.crl-web-2  deleted outside crane" in drift, drift
    assert "~ container.crl-web-1  running: false → true" in changes and "+ container.crl-web-2" in changes, changes
    ok(stack, "apply", "--auto-approve")
    for i in (1, 2):
        assert http_get(f"10.234.0.{10 + i}:8080", timeout=10) == f"crl-web-{i}"
    assert stack.crane("plan", "--detailed-exitcode").code == 0


def test_a_new_memory_limit_restarts_the_container_with_the_same_uuid(stack: ProjectDir, lxc_host: LxcHost) -> None:
    uuid = lxc_host.conn.lookupByName("crl-web-2").UUIDString()
    write(stack, PREFIX, "10.234.0", count=2, memory=96)
    plan = ok(stack, "plan")
    assert "~ container.crl-web-2  memory_mib: 64 → 96  # restarts the container" in plan, plan
    ok(stack, "apply", "--auto-approve")
    dom = lxc_host.conn.lookupByName("crl-web-2")
    assert dom.UUIDString() == uuid and dom.info()[1] == 96 * 1024
    cgroup = next(Path("/sys/fs/cgroup/memory/machine").glob(f"lxc-{dom.ID()}-crl-web-2.libvirt-lxc"))
    assert int((cgroup / "memory.limit_in_bytes").read_text()) == 96 * 1024**2
    assert http_get("10.234.0.12:8080/alloc/64", timeout=20) == "0"  # fits now
    assert stack.crane("plan", "--detailed-exitcode").code == 0


def test_destroy_leaves_no_container_veth_bridge_cgroup_or_supervisor(stack: ProjectDir, lxc_host: LxcHost) -> None:
    devices = [nic_device(f"crl-web-{i}", 0) for i in (1, 2)]
    bridge = json.loads(ok(stack, "state", "show", "network.crl-lan"))["outputs"]["bridge_name"]
    running = lxc_host.leftovers(PREFIX, [*devices, bridge])
    assert running["veths"] == sorted([*devices, bridge]) and len(running["supervisors"]) == 2, running
    assert any("/memory/machine/" in c for c in running["cgroups"]), running
    ok(stack, "destroy", "--auto-approve")
    assert lxc_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert lxc_host.leftovers(PREFIX, [*devices, bridge]) == {"veths": [], "cgroups": [], "supervisors": []}
    assert not Path("/var/lib/crl-pool").exists()  # the volume emptied, then the directory crane made
    assert ok(stack, "state", "list") == ""


def test_sigkill_mid_apply_then_apply_converges(lxc_host: LxcHost, tmp_path: Path) -> None:
    prefix = "crk-"
    lxc_host.sweep(prefix)
    project = lxc_project(tmp_path, prefix, "10.235.0", count=3)
    try:
        # killed right after the fourth object (of six) was created on the host and before crane recorded it
        killed = project.crane("apply", "--auto-approve", "--parallelism", "1",
                               env={"CRANE_FAILPOINT": "after-mutation:4"})
        assert killed.code == -signal.SIGKILL
        assert 0 < len(lxc_host.names(prefix)["domains"]) < 3
        ok(project, "apply", "--auto-approve")
        assert lxc_host.names(prefix) == {"domains": ["crk-web-1", "crk-web-2", "crk-web-3"],
                                          "networks": ["crk-lan"], "pools": ["crk-pool"], "volumes": ["crk-data"]}
        assert len(ok(project, "state", "list").split()) == 6
        assert project.crane("plan", "--detailed-exitcode").code == 0
        assert http_get("10.235.0.13:8080", timeout=10) == "crk-web-3"
        ok(project, "destroy", "--auto-approve")
        assert lxc_host.names(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}
        assert lxc_host.leftovers(prefix, []) == {"veths": [], "cgroups": [], "supervisors": []}
    finally:
        lxc_host.sweep(prefix)


def test_a_vm_on_the_lxc_endpoint_and_a_container_on_qemu_are_plan_errors(lxc_host: LxcHost, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    project.write_config(f"""
        [stacks.mixed]
        file = "stacks/main.py"
        uri = "{LXC_URI}"
        [stacks.mixed.providers.vms]
        uri = "{REAL_URI}"
    """)
    project.write_stack("""
        from crane_iac import VM, Container
        VM("crm-vm", vcpus=1, memory_mib=64)
        Container("crm-ct", memory_mib=64, init=["/bin/true"], provider="vms")
    """)
    assert_clean_error(project.crane("plan"),
                       "main.py:3: vm.crm-vm: lxc:///system runs containers, not VMs: give the VM an endpoint with a "
                       "qemu:// uri",
                       "main.py:4: container.crm-ct: qemu:///system runs qemu guests, not containers: declare an "
                       'endpoint with uri = "lxc:///system"')
    assert lxc_host.names("crm-")["domains"] == []
