"""An MPI cluster for real: a head and 4 compute nodes, each an LXC container on lxc:///system, set up by crane (the
nodes' init, the head's ansible-runner run). A real MPI program (tests/mpi/pi.c) is compiled with mpicc on the head
and run with mpirun from the head as the cluster user, over SSH with pinned host keys and TCP: its 8 ranks run on
the 4 compute nodes and integrate pi. The cluster then grows to 6 nodes without touching the 4 running ones, and is
destroyed. The tests of this module run in order on one applied stack."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.resources.container import nic_device
from tests.conftest import ProjectDir
from tests.real.host import LXC_URI, LxcHost

PREFIX = "crm-"
NET = "10.244.0"  # each module of tests/real has its own subnet
HEAD = f"{NET}.10"
POOL_DIR = Path(f"/var/lib/{PREFIX}pool")
SOURCE = Path(__file__).resolve().parents[1] / "mpi" / "pi.c"
STACK = f'''
from crane_iac import MPICluster, Network, StoragePool, variable

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="{POOL_DIR}")
MPICluster("{PREFIX}pi", network=net, pool=pool, nodes=variable("nodes"), slots_per_node=2, memory_mib=256)
'''


def node(i: int) -> str:
    return f"{PREFIX}pi-node-{i}"


def ok(project: ProjectDir, *args: str) -> str:
    result = project.crane(*args)
    assert result.code == 0, result.out + result.err
    return result.out + result.err


class Head:
    """The cluster user's SSH to the head, as a user of the cluster logs in: the key and the address from ``crane
    output``, the head's host key pinned from the shared disk (never accepted blindly)."""

    def __init__(self, project: ProjectDir, tmp: Path) -> None:
        outputs = json.loads(ok(project, "output", "--json"))[f"{PREFIX}pi"]
        self.argv: list[str] = outputs["ssh"]
        self.hostfile: str = outputs["hostfile"]
        self.work_dir: str = outputs["work_dir"]
        assert self.argv[-1] == f"mpi@{HEAD}" and outputs["head"] == HEAD, outputs
        pub = (shared_dir() / ".crane" / "hostkeys" / "head.pub").read_text().split()
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(f"{HEAD} {pub[0]} {pub[1]}\n")

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        ssh = [self.argv[0], "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *self.argv[1:]]
        return subprocess.run([*ssh, command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def shared_dir() -> Path:
    """The cluster's shared directory on this host: the directory volume every node mounts at /srv."""
    return POOL_DIR / f"{PREFIX}pi-shared"


def ranks(out: str) -> Counter[str]:
    """The host each rank ran on, counted (pi.c prints ``rank R of N on HOST``)."""
    return Counter(re.findall(r"^rank \d+ of \d+ on (\S+)$", out, re.M))


def computed_pi(out: str) -> float:
    found = re.search(r"^pi = ([0-9.]+)$", out, re.M)
    assert found, out
    return float(found.group(1))


def domain_ids(lxc_host: LxcHost, names: list[str]) -> dict[str, int]:
    """Each running container's domain ID: a container restarted or recreated gets a new one."""
    return {name: lxc_host.conn.lookupByName(name).ID() for name in names}


@pytest.fixture(scope="module")
def cluster(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    project = ProjectDir(tmp_path_factory.mktemp("mpi"))
    project.write_config(f"""
        [stacks.hpc]
        file = "stacks/hpc.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5
        [stacks.hpc.vars]
        nodes = {{ type = "int", default = 4 }}
    """)
    project.write_stack(STACK, "hpc.py")
    try:
        out = ok(project, "apply", "--auto-approve")
        print(out[-2000:])
        yield project
    finally:
        project.crane("destroy", "--auto-approve")
        lxc_host.sweep(PREFIX)


def test_pi_runs_as_eight_ranks_on_the_four_compute_nodes_from_the_head(
        cluster: ProjectDir, tmp_path: Path) -> None:
    head = Head(cluster, tmp_path)
    hostfile = head.run(f"cat {head.hostfile}")
    assert hostfile.returncode == 0, hostfile.stderr
    assert [ln.split()[:2] for ln in hostfile.stdout.splitlines() if not ln.startswith("#")] == \
        [[f"{NET}.{10 + i}", "slots=2"] for i in (1, 2, 3, 4)], hostfile.stdout
    (shared_dir() / "work" / "pi.c").write_text(SOURCE.read_text())  # the shared directory, seen from this host
    built = head.run(f"cd {head.work_dir} && mpicc -O2 -o pi pi.c")
    assert built.returncode == 0, built.stderr
    run = head.run(f"cd {head.work_dir} && mpirun -np 8 --hostfile {head.hostfile} ./pi 1e7")
    print(run.stdout, run.stderr[-2000:])
    assert run.returncode == 0, run.stdout + run.stderr
    assert ranks(run.stdout) == {node(i): 2 for i in (1, 2, 3, 4)}, run.stdout  # two ranks on each compute node
    assert abs(computed_pi(run.stdout) - 3.141592653589793) < 1e-6, run.stdout
    whoami = head.run("id -un; ls -ld ~ | cut -d' ' -f1")
    assert whoami.stdout.split() == ["mpi", "drwx------"], whoami.stdout  # the cluster user, not root


def test_the_cluster_users_ssh_refuses_a_host_whose_key_is_not_pinned(cluster: ProjectDir, tmp_path: Path) -> None:
    head = Head(cluster, tmp_path)
    # with the pinned keys the user's SSH goes from the head to a node; with a known_hosts that lacks the node's key
    # it refuses the node instead of trusting the key it is shown
    pinned = head.run(f"ssh {NET}.11 hostname")
    assert (pinned.returncode, pinned.stdout.strip()) == (0, node(1)), pinned.stderr
    unknown = head.run(f"ssh -o UserKnownHostsFile=/dev/null {NET}.11 hostname")
    assert unknown.returncode != 0 and "Host key verification failed" in unknown.stderr, unknown.stderr


def test_a_second_apply_is_a_no_op(cluster: ProjectDir) -> None:
    out = ok(cluster, "apply", "--auto-approve")
    assert "No changes" in out and "configuring" not in out, out


def test_growing_to_six_nodes_adds_two_and_rewrites_the_hostfile_without_touching_the_others(
        cluster: ProjectDir, lxc_host: LxcHost, tmp_path: Path) -> None:
    running = [f"{PREFIX}pi-head", *(node(i) for i in (1, 2, 3, 4))]
    before = domain_ids(lxc_host, running)
    plan = cluster.crane("plan", "--var", "nodes=6")
    changes = [ln for ln in plan.out.splitlines() if re.match(r"^  [-+~!]", ln)]
    assert {ln.split()[1] for ln in changes} == {f"mpicluster.{PREFIX}pi/container.node-5",
                                                 f"mpicluster.{PREFIX}pi/container.node-6",
                                                 f"mpicluster.{PREFIX}pi/configuration.head"}, plan.out
    assert not [ln for ln in changes if "configuration.head" not in ln and not ln.startswith("  +")], plan.out
    ok(cluster, "apply", "--auto-approve", "--var", "nodes=6")
    assert domain_ids(lxc_host, running) == before  # no running node was restarted or recreated
    head = Head(cluster, tmp_path)
    run = head.run(f"cd {head.work_dir} && mpirun -np 12 --hostfile {head.hostfile} ./pi 1e7")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ranks(run.stdout) == {node(i): 2 for i in range(1, 7)}, run.stdout
    assert abs(computed_pi(run.stdout) - 3.141592653589793) < 1e-6, run.stdout


def test_destroy_leaves_no_container_veth_cgroup_process_or_shared_directory(
        cluster: ProjectDir, lxc_host: LxcHost) -> None:
    names = [f"{PREFIX}pi-head", *(node(i) for i in range(1, 7))]
    devices = [nic_device(name, 0) for name in names]
    assert len(lxc_host.leftovers(PREFIX, devices)["supervisors"]) == 7
    ok(cluster, "destroy", "--auto-approve", "--var", "nodes=6")
    assert lxc_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert lxc_host.leftovers(PREFIX, devices) == {"veths": [], "cgroups": [], "supervisors": []}
    assert not POOL_DIR.exists()
    assert not list((cluster.root / ".crane").rglob(f"{PREFIX}pi-*key"))  # both keys crane made went with it
