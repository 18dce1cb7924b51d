"""``crane job``: run a job file on an MPI cluster (cluster, upload, build, run, fetch, release; resumable), and
list, show, follow and cancel jobs (docs/guides/jobs.md)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crane_iac.commands.base import AsJson, Chdir, Stack, app, workspace

if TYPE_CHECKING:
    from crane_iac.engine.workspace import Workspace
    from crane_iac.jobs.journal import JobRecord, Journal

job_app = typer.Typer(help="Jobs on MPI clusters: run a job file, resumably; list, show, logs, cancel.",
                      no_args_is_help=True)
app.add_typer(job_app, name="job")

Name = Annotated[str, typer.Argument(metavar="NAME", help="The job's name (its file's, or its name = \"...\").")]


def _journal(chdir: Path, stack: str | None, name: str) -> "tuple[Workspace, Journal, JobRecord]":
    from crane_iac.jobs.journal import JobError, Journal

    ws = workspace(chdir, stack)
    journal = Journal(ws.store, ws.name, name)
    record = journal.read()
    if record is None:
        known = ", ".join(ws.store.jobs(ws.name)) or "none"
        raise JobError(f"stack {ws.name!r} has no job {name!r} (its jobs: {known})")
    return ws, journal, record


@job_app.command("run")
def job_run(jobfile: Annotated[Path, typer.Argument(metavar="JOBFILE", help="The job file (TOML).")],
            chdir: Chdir = Path(".")) -> int:
    """Run (or resume) the job JOBFILE describes; crane's exit code is the job's."""
    from crane_iac.jobs.cluster import StackCluster
    from crane_iac.jobs.jobfile import load_job
    from crane_iac.jobs.journal import Journal
    from crane_iac.jobs.pipeline import Pipeline

    job = load_job(jobfile)
    ws = workspace(chdir, job.stack)
    pipeline = Pipeline(job, Journal(ws.store, ws.name, job.name), StackCluster(ws, job.cluster))
    return pipeline.run_interruptible()


@job_app.command("list")
def job_list(stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
    """The stack's jobs: name, ID, status, exit code, the step it is at, when it started."""
    from crane_iac.jobs.journal import JobRecord

    ws = workspace(chdir, stack)
    records = [JobRecord.from_json(r) for r in ws.store.jobs(ws.name).values()]
    if as_json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        print(f"No jobs in stack {ws.name!r}.")
        return
    print(f"{'NAME':<20} {'ID':<10} {'STATUS':<10} {'EXIT':<5} {'STEP':<8} STARTED")
    for r in records:
        step = "-" if r.ended else (r.pending() or ["-"])[0]
        print(f"{r.name:<20} {r.id:<10} {r.status:<10} {'' if r.exit_code is None else r.exit_code!s:<5} "
              f"{step:<8} {r.started_at}")


@job_app.command("show")
def job_show(name: Name, stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
    """A job's record: its steps with their status, times and what they did."""
    _, _, record = _journal(chdir, stack, name)
    if as_json:
        print(json.dumps(record.to_json(), indent=2))
        return
    exit_code = "" if record.exit_code is None else f", exit code {record.exit_code}"
    print(f"job {record.name} ({record.id}): {record.status}{exit_code}")
    print(f"  job file:  {record.jobfile}")
    print(f"  cluster:   {record.cluster} of stack {record.stack}")
    print(f"  directory: {record.work_dir or '(not yet made)'}")
    print(f"  started:   {record.started_at}{f', ended {record.finished_at}' if record.finished_at else ''}; "
          f"{record.runs} run(s) of crane job run")
    for step, entry in record.steps.items():
        detail = ", ".join(f"{k}={v}" for k, v in entry.detail.items())
        print(f"  {step:<8} {entry.status:<8} {entry.started_at:<26} {entry.finished_at:<26} {detail}")


@job_app.command("logs")
def job_logs(name: Name, stack: Stack = None, chdir: Chdir = Path("."),
             follow: Annotated[bool, typer.Option("--follow", "-f", metavar="",
                                                  help="Until the job ends.")] = False) -> int:
    """The job's output (the command's stdout and stderr), from the head; ``--follow`` until it ends."""
    import shlex

    from crane_iac.jobs.cluster import ssh_head
    from crane_iac.jobs.journal import JobError
    from crane_iac.jobs.remote import LOG

    ws, _, record = _journal(chdir, stack, name)
    if not record.work_dir or "pgid" not in record.steps["run"].detail:
        raise JobError(f"job {name!r} ({record.id}) has not started its command yet")
    if record.steps["release"].status == "done":
        raise JobError(f"job {name!r} ({record.id}) released its cluster: its log was fetched with its results "
                       "(job.log in the output directory)")
    head = ssh_head(ws, record.cluster.removeprefix("mpicluster."))
    if follow:
        head.attach(record.work_dir)
        return 0
    return head.stream(f"cat {shlex.quote(record.work_dir)}/{LOG}")


@job_app.command("cancel")
def job_cancel(name: Name, stack: Stack = None, chdir: Chdir = Path(".")) -> None:
    """Stop the job: its process group on the head is sent SIGTERM, and it is recorded cancelled (a later
    ``crane job run`` of its file starts afresh)."""
    from crane_iac.jobs.cluster import ssh_head
    from crane_iac.jobs.journal import JobError

    ws, journal, record = _journal(chdir, stack, name)
    if record.ended:
        raise JobError(f"job {name!r} ({record.id}) has ended already: {record.status}")
    journal.end(record, "cancelled", None)
    killed = False
    if "pgid" in record.steps["run"].detail and record.steps["run"].status == "running":
        killed = ssh_head(ws, record.cluster.removeprefix("mpicluster.")).cancel(record.work_dir)
    print(f"job {name} ({record.id}): cancelled" + (f"; its process group {record.steps['run'].detail['pgid']} "
                                                     "on the head was sent SIGTERM" if killed else ""))
