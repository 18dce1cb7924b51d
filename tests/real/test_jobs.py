"""The job pipeline for real: ``crane job run`` applies a 4-node MPI cluster of LXC containers (the stack's
MPICluster), uploads tests/mpi/pi.c to the head over SSH (the cluster user's key, the head's host key pinned),
builds it with mpicc, runs it detached as 8 ranks with mpirun, fetches the result, and releases the cluster. A
job SIGKILLed right after its upload (failpoint ``job-after-upload``) is finished by a second run that uploads
nothing (its sources are gone by then, and the upload's record is unchanged); a failing command is crane's exit
code. The tests of this module run in order on one project; the last job releases the cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CRANE, ProjectDir
from tests.real.host import LXC_URI, LxcHost
from tests.waiting import wait_until

PREFIX = "crj-"
NET = "10.245.0"  # each module of tests/real has its own subnet
POOL_DIR = Path(f"/var/lib/{PREFIX}pool")
SOURCE = Path(__file__).resolve().parents[1] / "mpi" / "pi.c"
CLUSTER = f"{PREFIX}pi"
STACK = f'''
from crane_iac import MPICluster, Network, StoragePool

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="{POOL_DIR}")
MPICluster("{CLUSTER}", network=net, pool=pool, nodes=4, slots_per_node=2, memory_mib=256)
'''


def job(project: ProjectDir, name: str, *, command: str, release: bool) -> Path:
    """A job file for pi.c on the cluster, with the source next to it."""
    (project.root / "pi.c").write_text(SOURCE.read_text())
    path = project.root / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""\
        command = {command!r}
        release = {str(release).lower()}
        [cluster]
        name = "{CLUSTER}"
        [program]
        files = ["pi.c"]
        build = "mpicc -O2 -o pi pi.c"
        [outputs]
        files = ["pi.out"]
    """))
    return path


def ranks(out: str) -> Counter[str]:
    return Counter(re.findall(r"^rank \d+ of \d+ on (\S+)$", out, re.M))


def computed_pi(out: str) -> float:
    found = re.search(r"^pi = ([0-9.]+)$", out, re.M)
    assert found, out
    return float(found.group(1))


def record(project: ProjectDir, name: str) -> dict:
    shown = project.crane("job", "show", name, "--json")
    assert shown.code == 0, shown.err
    return json.loads(shown.out)


@pytest.fixture(scope="module")
def project(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    project = ProjectDir(tmp_path_factory.mktemp("jobs"))
    project.write_config(f"""
        [stacks.hpc]
        file = "stacks/hpc.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5
    """)
    project.write_stack(STACK, "hpc.py")
    try:
        yield project
    finally:
        project.crane("destroy", "--auto-approve")
        lxc_host.sweep(PREFIX)


def test_a_job_killed_right_after_its_upload_is_finished_by_a_second_run_without_uploading_again(
        project: ProjectDir) -> None:
    path = job(project, "resume", command="mpirun -np 8 --hostfile /srv/hostfile ./pi 1e7 > pi.out && cat pi.out",
               release=False)
    killed = project.crane("job", "run", str(path), env={"CRANE_FAILPOINT": "job-after-upload"}, timeout=900)
    print(killed.out[-3000:], killed.err[-3000:])
    assert killed.code == -signal.SIGKILL, (killed.code, killed.err)
    assert "[1/6] cluster: applied" in killed.out and "[2/6] upload: 1 file(s)" in killed.out, killed.out
    before = record(project, "resume")
    assert before["status"] == "running" and before["steps"]["upload"]["status"] == "done"
    assert before["steps"]["build"]["status"] == "pending"
    uploaded = POOL_DIR / f"{CLUSTER}-shared" / "work" / f"resume-{before['id']}" / "pi.c"
    mtime = uploaded.stat().st_mtime_ns
    (project.root / "pi.c").unlink()  # a second upload could not happen without failing
    resumed = project.crane("job", "run", str(path), timeout=900)
    print(resumed.out[-3000:], resumed.err[-3000:])
    assert resumed.code == 0, resumed.out + resumed.err
    assert "resuming at step build (run 2)" in resumed.out and "[2/6] upload: done earlier" in resumed.out
    after = record(project, "resume")
    assert after["id"] == before["id"] and after["steps"]["upload"] == before["steps"]["upload"]
    assert uploaded.stat().st_mtime_ns == mtime  # the file on the head is the first run's
    out = (project.root / "results" / "resume" / "pi.out").read_text()
    assert ranks(out) == {f"{CLUSTER}-node-{i}": 2 for i in (1, 2, 3, 4)}, out
    assert abs(computed_pi(out) - 3.141592653589793) < 1e-6, out
    assert after["status"] == "succeeded" and after["steps"]["release"]["status"] == "skipped"


def test_a_job_whose_command_fails_exits_with_its_code_and_keeps_the_cluster(project: ProjectDir,
                                                                            lxc_host: LxcHost) -> None:
    path = job(project, "fails", command="./pi 1e5 > pi.out; echo giving up >&2; exit 3", release=False)
    failed = project.crane("job", "run", str(path), timeout=900)
    print(failed.out[-3000:], failed.err[-3000:])
    assert failed.code == 3, failed.out + failed.err
    assert "[1/6] cluster: up to date" in failed.out and "[4/6] run: failed, exit code 3" in failed.out
    assert "giving up" in (project.root / "results" / "fails" / "job.log").read_text()
    assert record(project, "fails")["status"] == "failed" and record(project, "fails")["exit_code"] == 3
    assert len(lxc_host.names(PREFIX)["domains"]) == 5  # kept: release = false
    logs = project.crane("job", "logs", "fails")  # from the head, over the same SSH
    assert logs.code == 0 and "giving up" in logs.out, logs.out + logs.err


def test_a_cancelled_job_stops_on_the_head_and_its_crane_job_run_exits(project: ProjectDir) -> None:
    path = job(project, "long", command="echo sleeping; sleep 600", release=False)
    running = subprocess.Popen([*CRANE, "job", "run", str(path)], cwd=project.root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        def started() -> bool:
            if running.poll() is not None:
                raise AssertionError(running.communicate())
            shown = project.crane("job", "show", "long", "--json")
            return shown.code == 0 and "pgid" in json.loads(shown.out)["steps"]["run"]["detail"]
        wait_until(started, 300, "the job's command started on the head")
        pgid = record(project, "long")["steps"]["run"]["detail"]["pgid"]
        cancelled = project.crane("job", "cancel", "long")
        assert cancelled.code == 0 and f"process group {pgid}" in cancelled.out, cancelled.out + cancelled.err
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 143 and "cancelled" in out, out + err
    assert record(project, "long")["status"] == "cancelled"
    # the job's process group is gone from the head: its directory has a log and no exit code
    directory = POOL_DIR / f"{CLUSTER}-shared" / "work" / f"long-{record(project, 'long')['id']}" / ".crane"
    assert (directory / "log").read_text() == "sleeping\n" and not (directory / "exit").exists()
    assert subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True).returncode == 1


def test_pi_as_a_job_runs_eight_ranks_on_the_four_nodes_lands_here_and_releases_the_cluster(
        project: ProjectDir, lxc_host: LxcHost) -> None:
    path = job(project, "pi", command="mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8 > pi.out && cat pi.out",
               release=True)
    done = project.crane("job", "run", str(path), timeout=900)
    print(done.out[-3000:], done.err[-3000:])
    assert done.code == 0, done.out + done.err
    assert "pi = 3.14159" in done.out  # the job's output, streamed
    out = (project.root / "results" / "pi" / "pi.out").read_text()
    assert ranks(out) == {f"{CLUSTER}-node-{i}": 2 for i in (1, 2, 3, 4)}, out  # across the 4 containers
    assert abs(computed_pi(out) - 3.141592653589793) < 1e-9, out
    assert f"[6/6] release: released mpicluster.{CLUSTER}" in done.out
    assert lxc_host.names(PREFIX)["domains"] == []  # the cluster is gone
    listed = project.crane("job", "list").out
    assert re.search(r"^pi\s+\w+\s+succeeded\s+0 ", listed, re.M), listed
    history = project.crane("state", "history", "--limit", "200")
    assert "job:pi" in history.out, history.out + history.err  # each step a line of the stack's history
