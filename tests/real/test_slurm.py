"""Slurm on an MPI cluster for real: a head (slurmctld) and 4 compute nodes (slurmd), LXC containers on
lxc:///system made by crane with scheduler="slurm", munge keyed by the cluster's own key. ``crane job run`` submits
tests/mpi/pi.c's batch script with sbatch and follows it until it ends: its 8 ranks run on the 4 containers and
the result lands here. Then the cluster grows to 6 nodes and shrinks to 3 while a long batch job runs on the nodes
that stay (pinned there with --nodelist): the running nodes are not touched, slurm.conf lists the right nodes
each time, the nodes that go are drained before their containers are deleted, and the job finishes. The tests of
this module run in order on one applied stack; the last one destroys it and finds no Slurm or munge daemon left."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.engine.workspace import Workspace
from crane_iac.jobs.cluster import ssh_head
from crane_iac.mpi.slurm import slurm_node_names
from tests.conftest import CRANE, ProjectDir
from tests.real.host import LXC_URI, LxcHost
from tests.real.test_mpi import computed_pi, domain_ids, ranks
from tests.waiting import wait_until

PREFIX = "csl-"
NET = "10.246.0"
POOL_DIR = Path(f"/var/lib/{PREFIX}pool")
SOURCE = Path(__file__).resolve().parents[1] / "mpi" / "pi.c"
CLUSTER = f"{PREFIX}pi"
SHARED = POOL_DIR / f"{CLUSTER}-shared"
DAEMONS = ("slurmctld", "slurmd", "munged")
STACK = f'''
from crane_iac import MPICluster, Network, StoragePool, variable

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="{POOL_DIR}")
MPICluster("{CLUSTER}", network=net, pool=pool, nodes=variable("nodes"), slots_per_node=2, memory_mib=256,
           scheduler="slurm", drain_timeout=variable("drain"))
'''


def node(i: int) -> str:
    return f"{CLUSTER}-node-{i}"


def ok(project: ProjectDir, *args: str, timeout: float = 600) -> str:
    result = project.crane(*args, env={}, timeout=timeout)
    assert result.code == 0, result.out + result.err
    return result.out + result.err


def daemons() -> dict[str, int]:
    """How many Slurm and munge daemons run on this machine (the containers' processes are its processes)."""
    return {name: len(subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split())
            for name in DAEMONS}


def slurm_conf_nodes() -> list[str]:
    return slurm_node_names((SHARED / ".crane" / "slurm" / "etc" / "slurm.conf").read_text())


def controller_log() -> str:
    return (SHARED / ".crane" / "slurm" / "log" / "slurmctld.log").read_text()


def head_says(project: ProjectDir, script: str) -> str:
    """``script`` run on the head as the cluster user (the job pipeline's own SSH, host key pinned)."""
    return ssh_head(Workspace.open(project.root), CLUSTER).check(script, script, timeout=120)


def job_file(project: ProjectDir, name: str, script: str, **extra: str) -> Path:
    (project.root / f"{name}.sbatch").write_text(textwrap.dedent(script))
    path = project.root / f"{name}.toml"
    lines = [f'sbatch = "{name}.sbatch"', *(f"{k} = {v!r}" for k, v in extra.items()), "[cluster]",
             f'name = "{CLUSTER}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def record(project: ProjectDir, name: str) -> dict:
    shown = project.crane("job", "show", name, "--json")
    assert shown.code == 0, shown.err
    return json.loads(shown.out)


def configure(project: ProjectDir, *, nodes: int) -> None:
    """The project's crane.toml, the cluster's size by default ``nodes``: ``crane job run`` plans with defaults."""
    project.write_config(f"""
        [stacks.hpc]
        file = "stacks/hpc.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5
        [stacks.hpc.vars]
        nodes = {{ type = "int", default = {nodes} }}
        drain = {{ type = "int", default = 3600 }}
    """)


@pytest.fixture(scope="module")
def cluster(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    assert daemons() == dict.fromkeys(DAEMONS, 0), "Slurm or munge daemons run already on this machine"
    project = ProjectDir(tmp_path_factory.mktemp("slurm"))
    configure(project, nodes=4)
    project.write_stack(STACK, "hpc.py")
    try:
        print(ok(project, "apply", "--auto-approve")[-2000:])
        yield project
    finally:
        project.crane("destroy", "--auto-approve", "--var", "nodes=6")
        lxc_host.sweep(PREFIX)


def test_the_controller_knows_the_four_compute_nodes_and_the_munge_key_is_the_clusters(cluster: ProjectDir) -> None:
    assert slurm_conf_nodes() == [node(i) for i in (1, 2, 3, 4)]
    states = head_says(cluster, "sinfo -h -N -o '%N %t %c %P'").split("\n")
    assert sorted(ln for ln in states if ln) == [f"{node(i)} idle 2 main*" for i in (1, 2, 3, 4)], states
    key = SHARED / ".crane" / "munge" / "munge.key"
    assert oct(key.stat().st_mode & 0o777) == "0o400" and key.stat().st_uid != 2600  # munge's, not the user's
    denied = head_says(cluster, f"cat {'/srv/.crane/munge/munge.key'} 2>&1 || true")
    assert "Permission denied" in denied, denied  # the cluster user cannot read it
    shown = ok(cluster, "state", "show", f"mpicluster.{CLUSTER}/configuration.head")
    assert key.read_text().strip() not in shown and "munge_key_file" in shown  # by name only


def test_pi_through_slurm_runs_eight_ranks_on_the_four_containers_and_lands_here(cluster: ProjectDir) -> None:
    (cluster.root / "pi.c").write_text(SOURCE.read_text())
    path = job_file(cluster, "pi", """\
        #!/bin/sh
        #SBATCH --nodes=4 --ntasks=8
        mpirun ./pi 1e7 > pi.out
        cat pi.out
    """)
    with path.open("a") as f:
        f.write('[program]\nfiles = ["pi.c"]\nbuild = "mpicc -O2 -o pi pi.c"\n[outputs]\nfiles = ["pi.out"]\n')
    done = cluster.crane("job", "run", str(path), env={}, timeout=900)
    print(done.out[-3000:], done.err[-3000:])
    assert done.code == 0, done.out + done.err
    assert "[4/6] run: sbatch pi.sbatch" in done.out and "crane: submitted Slurm job" in done.out, done.out
    assert re.search(r"crane: Slurm job \d+ COMPLETED, exit code 0", done.out), done.out
    out = (cluster.root / "results" / "pi" / "pi.out").read_text()
    assert ranks(out) == {node(i): 2 for i in (1, 2, 3, 4)}, out  # two ranks on each of the 4 containers
    assert abs(computed_pi(out) - 3.141592653589793) < 1e-6, out
    assert "pi = 3.14159" in (cluster.root / "results" / "pi" / "job.log").read_text()  # streamed and fetched


def test_a_batch_script_that_fails_is_crane_job_runs_exit_code(cluster: ProjectDir) -> None:
    path = job_file(cluster, "fails", """\
        #!/bin/sh
        #SBATCH --nodes=1
        echo giving up on $(hostname)
        exit 3
    """)
    failed = cluster.crane("job", "run", str(path), env={}, timeout=600)
    assert failed.code == 3, failed.out + failed.err
    assert re.search(r"crane: Slurm job \d+ FAILED, exit code 3", failed.out) and "giving up on" in failed.out


def test_resizing_4_6_3_under_a_running_job_drains_the_nodes_that_go_and_the_job_finishes(
        cluster: ProjectDir, lxc_host: LxcHost) -> None:
    # the job holds nodes 1-3 until the test lets it go (a file in its directory): it runs through both resizes
    path = job_file(cluster, "long", f"""\
        #!/bin/sh
        #SBATCH --nodes=3 --ntasks=3 --nodelist={CLUSTER}-node-[1-3]
        srun hostname | sort
        touch started
        while [ ! -e finish ]; do sleep 0.5; done
        echo finished
    """)
    running = subprocess.Popen([*CRANE, "job", "run", str(path)], cwd=cluster.root, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        def job_dir() -> Path | None:
            if running.poll() is not None:
                raise AssertionError(running.communicate())
            shown = cluster.crane("job", "show", "long", "--json")
            work_dir = json.loads(shown.out).get("work_dir") if shown.code == 0 else None
            directory = SHARED / "work" / Path(work_dir).name if work_dir else None
            return directory if directory is not None and (directory / "started").exists() else None
        directory = wait_until(job_dir, 300, "the long job running on nodes 1-3", every=0.5)

        # 4 → 6: two containers and the head's run, the running nodes untouched; slurmd on the new ones registers
        stay = [f"{CLUSTER}-head", *(node(i) for i in (1, 2, 3, 4))]
        before = domain_ids(lxc_host, stay)
        plan = cluster.crane("plan", "--var", "nodes=6")
        changed = {ln.split()[1] for ln in plan.out.splitlines() if re.match(r"^  [-+~!]", ln)}
        assert changed == {f"mpicluster.{CLUSTER}/container.node-5", f"mpicluster.{CLUSTER}/container.node-6",
                           f"mpicluster.{CLUSTER}/configuration.head"}, plan.out
        started = time.monotonic()
        print(ok(cluster, "apply", "--auto-approve", "--var", "nodes=6")[-1500:])
        assert domain_ids(lxc_host, stay) == before
        assert slurm_conf_nodes() == [node(i) for i in range(1, 7)]
        assert head_says(cluster, f"srun -N1 -w {node(6)} hostname").strip() == node(6)  # Slurm schedules there
        print(f"4 → 6 nodes until Slurm ran a step on node-6: {time.monotonic() - started:.1f} s")
        assert head_says(cluster, f"squeue -h -j $(cat {'/srv/work/' + directory.name}/.crane/slurm-id) -o %T") \
            .strip() == "RUNNING"

        # 6 → 3: nodes 4-6 drained (no job runs there), slurm.conf rewritten, then their containers deleted
        print(ok(cluster, "apply", "--auto-approve", "--var", "nodes=3")[-1500:])
        assert slurm_conf_nodes() == [node(i) for i in (1, 2, 3)]
        assert sorted(lxc_host.names(PREFIX)["domains"]) == sorted(stay[:4])
        log = controller_log()
        for i in (4, 5, 6):
            assert re.search(rf"update_node: node {node(i)} reason set to: crane: the cluster shrinks", log), log
        for i in (1, 2, 3):
            assert f"node {node(i)} reason set to" not in log
        states = head_says(cluster, "sinfo -h -N -o '%N %t'").split("\n")
        assert sorted(ln for ln in states if ln) == [f"{node(i)} mix" for i in (1, 2, 3)], states

        (directory / "finish").touch()  # the job may end now
        out, _ = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    print(out[-3000:])
    assert running.returncode == 0, out
    assert "finished" in out and "\n".join(node(i) for i in (1, 2, 3)) in out, out
    assert record(cluster, "long")["status"] == "succeeded"


def test_a_shrink_never_kills_a_job_on_a_node_that_goes_it_waits_and_past_the_timeout_keeps_the_node(
        cluster: ProjectDir, lxc_host: LxcHost) -> None:
    hold = SHARED / "work" / "hold"
    submitted = head_says(cluster, f"cd /srv/work && sbatch --parsable -w {node(3)} -o hold.out "
                                   "--wrap 'while [ ! -e hold ]; do sleep 0.5; done; echo held'").strip()
    wait_until(lambda: head_says(cluster, f"squeue -h -j {submitted} -o %T").strip() == "RUNNING", 120,
               "the job on node-3 running", every=0.5)
    failed = cluster.crane("apply", "--auto-approve", "--var", "nodes=2", "--var", "drain=4", env={}, timeout=600)
    print(failed.out[-2000:], failed.err[-2000:])
    assert failed.code != 0
    assert f"jobs still run on {node(3)} after 4 s ({submitted} on {node(3)})" in failed.out + failed.err
    assert node(3) in lxc_host.names(PREFIX)["domains"]  # the apply stopped before deleting it
    assert slurm_conf_nodes() == [node(i) for i in (1, 2, 3)]
    assert head_says(cluster, f"sinfo -h -N -n {node(3)} -o %t").strip() == "drng"  # drained, its job running
    assert head_says(cluster, f"squeue -h -j {submitted} -o %T").strip() == "RUNNING"  # not killed

    hold.touch()
    wait_until(lambda: head_says(cluster, f"squeue -h -j {submitted} -o %T").strip() == "", 120,
               "the job on node-3 ended", every=0.5)
    ok(cluster, "apply", "--auto-approve", "--var", "nodes=2")
    assert node(3) not in lxc_host.names(PREFIX)["domains"]
    assert slurm_conf_nodes() == [node(1), node(2)]
    assert (SHARED / "work" / "hold.out").read_text() == "held\n"


def test_cancelling_a_batch_job_scancels_it_and_its_crane_job_run_exits(cluster: ProjectDir) -> None:
    path = job_file(cluster, "stuck", """\
        #!/bin/sh
        #SBATCH --nodes=1
        echo waiting
        sleep 600
    """)
    configure(cluster, nodes=2)  # the size it has now: the job's cluster step finds it up to date
    running = subprocess.Popen([*CRANE, "job", "run", str(path)], cwd=cluster.root,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    try:
        def slurm_id() -> str | None:
            if running.poll() is not None:
                raise AssertionError(running.communicate())
            shown = cluster.crane("job", "show", "stuck", "--json")
            work_dir = json.loads(shown.out).get("work_dir") if shown.code == 0 else None
            found = SHARED / "work" / Path(work_dir).name / ".crane" / "slurm-id" if work_dir else None
            return found.read_text().strip() if found is not None and found.exists() else None
        job_id = wait_until(slurm_id, 300, "the batch job submitted", every=0.5)
        wait_until(lambda: head_says(cluster, f"squeue -h -j {job_id} -o %T").strip() == "RUNNING", 120,
                   "the batch job running", every=0.5)
        cancelled = cluster.crane("job", "cancel", "stuck")
        assert cancelled.code == 0, cancelled.out + cancelled.err
        out, _ = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 143 and "cancelled" in out and "cluster: up to date" in out, out
    state = head_says(cluster, f"scontrol show job -o {job_id} | grep -o 'JobState=[A-Z]*'").strip()
    assert state == "JobState=CANCELLED", state
    assert record(cluster, "stuck")["status"] == "cancelled"


def test_destroy_leaves_no_container_and_no_slurm_or_munge_daemon(cluster: ProjectDir, lxc_host: LxcHost) -> None:
    assert daemons() == {"slurmctld": 1, "slurmd": 2, "munged": 3}
    ok(cluster, "destroy", "--auto-approve", "--var", "nodes=2")
    assert lxc_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert daemons() == dict.fromkeys(DAEMONS, 0)
    assert not POOL_DIR.exists()
