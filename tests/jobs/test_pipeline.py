"""The pipeline on the embedded sandbox: the cluster step plans and applies the stack's MPICluster for real (and the
release step destroys it), while a local directory stands for the head (the sandbox has no guest to log in to): the
same scripts run there by ``sh``, the same rsync copies files, the command runs detached as it would on the head.
Resumes are after real SIGKILLs of a ``crane job run`` in its own process (a failpoint, or the test)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crane_iac.engine.workspace import Workspace
from crane_iac.jobs.cluster import StackCluster
from crane_iac.jobs.jobfile import load_job
from crane_iac.jobs.journal import STEPS, JobError, Journal
from crane_iac.jobs.pipeline import Pipeline
from crane_iac.jobs.remote import LocalHead
from tests.engine.test_workspace import project
from tests.waiting import wait_until

STACK = """
from crane_iac import MPICluster, Network

lan = Network("hpc-net", mode="nat", ipv4="10.91.0.0/24", dhcp=False)
MPICluster("pi", network=lan, nodes=2)
"""
PROGRAM = """\
#!/bin/sh
# counts its starts, waits for a file when asked to, writes its result
echo start >> starts
echo "computing with $(cat params.txt)"
while [ -n "$WAIT_FOR" ] && [ ! -e "$WAIT_FOR" ]; do sleep 0.05; done
echo "result $(cat params.txt)" > result.txt
echo "done"
exit ${EXIT:-0}
"""


def job_file(root: Path, *, command: str = "./compute.sh", release: bool = True, outputs: str = '"result.txt"',
             build: str | None = "chmod +x compute.sh") -> Path:
    (root / "compute.sh").write_text(PROGRAM)
    (root / "params.txt").write_text("42\n")
    path = root / "job.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "pi"
        command = {command!r}
        inputs = ["params.txt"]
        release = {str(release).lower()}
        [cluster]
        name = "pi"
        [program]
        files = ["compute.sh"]
        {f"build = {build!r}" if build else ""}
        [outputs]
        files = [{outputs}]
        dir = "results"
    """))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project(tmp_path, STACK)
    (tmp_path / "head").mkdir()
    return tmp_path


def run(root: Path, jobfile: Path) -> tuple[int, str, str]:
    """``crane job run JOBFILE`` in this process, the head a local directory: exit code, progress, the job's output."""
    out, sink = io.StringIO(), io.BytesIO()
    job = load_job(jobfile)
    with Workspace.open(root) as ws:
        cluster = StackCluster(ws, job.cluster, connect=lambda _ws, _name: LocalHead(root / "head"))
        code = Pipeline(job, Journal(ws.store, ws.name, job.name), cluster, out=out, sink=sink).run()
    return code, out.getvalue(), sink.getvalue().decode()


def spawn(root: Path, jobfile: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``crane job run`` in a process of its own (to be killed)."""
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.local_run", str(root), str(jobfile), str(root / "head")],
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record(root: Path) -> dict:
    with Workspace.open(root) as ws:
        return ws.store.jobs(ws.name)["pi"]


def cluster_addresses(root: Path) -> list[str]:
    with Workspace.open(root) as ws:
        return sorted(a for a in ws.state().resources if a.startswith("mpicluster.pi/"))


def test_a_job_applies_its_cluster_uploads_builds_runs_fetches_and_releases_with_the_commands_exit_code(
        root: Path) -> None:
    code, progress, output = run(root, job_file(root))
    assert code == 0, progress
    lines = progress.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith("[")] == [
        "[1/6] cluster", "[1/6] cluster", "[2/6] upload", "[3/6] build", "[3/6] build", "[4/6] run", "[4/6] run",
        "[5/6] fetch", "[6/6] release", "[6/6] release"], progress
    assert "[1/6] cluster: applied" in progress and "[6/6] release: released mpicluster.pi" in progress
    assert "computing with 42" in output and "done" in output  # the command's output, streamed
    assert (root / "results" / "result.txt").read_text() == "result 42\n"
    assert "computing with 42" in (root / "results" / "job.log").read_text()
    assert cluster_addresses(root) == []  # applied by the cluster step, destroyed by the release step
    job = record(root)
    assert job["status"] == "succeeded" and job["exit_code"] == 0 and job["runs"] == 1
    assert [job["steps"][s]["status"] for s in STEPS] == ["done"] * 6
    assert job["steps"]["upload"]["detail"] == {"files": ["compute.sh", "params.txt"], "bytes": len(PROGRAM) + 3}
    with Workspace.open(root) as ws:  # each step is a line of the stack's history
        lines_ = [h for h in ws.history(1000) if h.action == "job"]
    assert {h.address for h in lines_} == {"job:pi"}
    assert [(h.after or {})["step"] for h in lines_ if (h.after or {}).get("status") == "done"] == list(STEPS)


def test_a_failing_command_is_the_jobs_exit_code_with_its_outputs_fetched_and_the_cluster_kept(root: Path) -> None:
    code, progress, _ = run(root, job_file(root, command="EXIT=7 ./compute.sh", release=False))
    assert code == 7, progress
    assert "[4/6] run: failed, exit code 7" in progress and "failed, exit code 7" in progress.splitlines()[-1]
    assert (root / "results" / "result.txt").read_text() == "result 42\n"
    assert cluster_addresses(root)  # release = false: kept
    assert record(root)["status"] == "failed" and record(root)["steps"]["release"]["status"] == "skipped"


def test_a_failing_build_skips_the_command_and_exits_with_the_builds_code(root: Path) -> None:
    code, progress, output = run(root, job_file(root, build="echo no compiler >&2; exit 4"))
    assert code == 4, progress
    assert "no compiler" in output and "[4/6] run: not run: the build failed" in progress
    assert not (root / "results" / "result.txt").exists() and cluster_addresses(root) == []


def test_an_output_the_command_did_not_write_fails_the_job_naming_it(root: Path) -> None:
    code, progress, _ = run(root, job_file(root, outputs='"result.txt", "missing.dat"'))
    assert code == 1 and "not on the head: missing.dat" in progress, progress


def test_a_job_killed_after_its_upload_resumes_without_uploading_again(root: Path) -> None:
    jobfile = job_file(root)
    killed = spawn(root, jobfile, {"CRANE_FAILPOINT": "job-after-upload"})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    before = record(root)
    assert before["status"] == "running" and before["steps"]["upload"]["status"] == "done"
    assert before["steps"]["build"]["status"] == "pending"
    # the sources are gone from here: a second upload could not happen without failing
    (root / "compute.sh").unlink()
    (root / "params.txt").unlink()
    code, progress, _ = run(root, jobfile)
    assert code == 0, progress
    assert "resuming at step build (run 2)" in progress
    assert "[1/6] cluster: done earlier" in progress and "[2/6] upload: done earlier" in progress
    after = record(root)
    assert after["steps"]["upload"] == before["steps"]["upload"] and after["id"] == before["id"]
    assert (root / "results" / "result.txt").read_text() == "result 42\n" and after["status"] == "succeeded"


def test_a_job_whose_crane_died_during_the_run_is_attached_to_not_started_twice(root: Path) -> None:
    jobfile = job_file(root, command="WAIT_FOR=go ./compute.sh")
    first = spawn(root, jobfile)
    starts = None

    def started() -> bool:
        nonlocal starts
        found = list((root / "head").glob("pi-*/starts"))
        starts = found[0] if found else None
        if first.poll() is not None:
            raise AssertionError(first.communicate())
        return starts is not None and "pgid" in record(root)["steps"]["run"]["detail"]
    wait_until(started, 60, "the command started on the head and recorded as started")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert starts is not None
    (starts.parent / "go").touch()  # the job goes on without crane, and ends
    code, progress, output = run(root, jobfile)
    assert code == 0, progress
    assert "[4/6] run: attaching to process group" in progress
    assert starts.read_text() == "start\n"  # started once
    assert "computing with 42" in output and "done" in output  # the log from its start
    assert record(root)["steps"]["run"]["detail"]["exit_code"] == 0


def test_ctrl_c_during_the_run_exits_130_saying_how_to_resume_and_the_command_goes_on(root: Path) -> None:
    jobfile = job_file(root, command="WAIT_FOR=go ./compute.sh")
    first = spawn(root, jobfile)

    def started() -> bool:
        if first.poll() is not None:
            raise AssertionError(first.communicate())
        with Workspace.open(root) as ws:
            job = ws.store.jobs(ws.name).get("pi")
        return job is not None and "pgid" in job["steps"]["run"]["detail"]
    wait_until(started, 60, "the command started on the head and recorded as started")
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, out + err
    assert "Traceback" not in err
    assert f"interrupted: what finished is recorded, and a job started on the head goes on there; `crane job run " \
           f"{jobfile}` resumes (attaching to it), `crane job cancel pi` stops it" in err
    interrupted = record(root)
    assert interrupted["status"] == "running" and interrupted["steps"]["run"]["status"] == "running"
    os.killpg(interrupted["steps"]["run"]["detail"]["pgid"], 0)  # still running on the head: no error
    (next(iter((root / "head").glob("pi-*"))) / "go").touch()
    code, progress, output = run(root, jobfile)
    assert code == 0 and "[4/6] run: attaching to process group" in progress, progress
    assert "computing with 42" in output  # the command's log, from its start
    assert next(iter((root / "head").glob("pi-*/starts"))).read_text() == "start\n"  # started once


def test_an_interrupted_job_whose_file_changed_is_refused_and_an_ended_one_runs_afresh(root: Path) -> None:
    jobfile = job_file(root)
    killed = spawn(root, jobfile, {"CRANE_FAILPOINT": "job-after-cluster"})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    jobfile.write_text(jobfile.read_text().replace("./compute.sh", "EXIT=3 ./compute.sh"))
    with pytest.raises(JobError, match=r"job 'pi' \(\w+\) was interrupted at step 'upload' and its job file has "
                                       r"changed since: restore .*job.toml to finish it, or `crane job cancel pi`"):
        run(root, jobfile)
    jobfile.write_text(jobfile.read_text().replace("EXIT=3 ./compute.sh", "./compute.sh"))
    first_id = record(root)["id"]
    assert run(root, jobfile)[0] == 0
    code, progress, _ = run(root, jobfile)  # ended: a new job, with a new ID and directory
    assert code == 0 and record(root)["id"] != first_id and "resuming" not in progress


def test_a_cancelled_command_ends_without_an_exit_code(root: Path) -> None:
    head = LocalHead(root / "head")
    directory = f"{head.work_dir}/pi-cancel"
    head.check(f"mkdir -p {directory}", "mkdir")
    pgid, fresh = head.start(directory, "echo up; sleep 600")
    assert fresh and head.start(directory, "echo up; sleep 600") == (pgid, False)  # never twice
    wait_until(lambda: (Path(directory) / ".crane" / "log").read_text() == "up\n", 30, "the command's output")
    assert head.cancel(directory)
    sink = io.BytesIO()
    assert head.attach(directory, sink) is None and sink.getvalue() == b"up\n"
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_a_job_cancelled_from_elsewhere_between_steps_stays_cancelled_and_its_run_stops(root: Path) -> None:
    jobfile = job_file(root, build="touch built; while [ ! -e go ]; do sleep 0.05; done")
    running = spawn(root, jobfile)
    try:
        wait_until(lambda: list((root / "head").glob("pi-*/built")), 60, "the build under way")
        with Workspace.open(root) as ws:  # what `crane job cancel` does for a job not yet at its run
            journal = Journal(ws.store, ws.name, "pi")
            current = journal.read()
            assert current is not None
            journal.end(current, "cancelled", None)
        (next(iter((root / "head").glob("pi-*"))) / "go").touch()
        out, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 143 and "cancelled" in out, out + err
    final = record(root)
    assert final["status"] == "cancelled" and final["steps"]["run"]["status"] == "pending"  # never started
    assert not list((root / "head").glob("pi-*/starts"))
