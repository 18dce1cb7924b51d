"""``python -m tests.jobs.local_run PROJECT JOBFILE HEAD``: ``crane job run JOBFILE`` of PROJECT (a sandbox stack),
with a local directory HEAD standing for the cluster's head (the embedded sandbox has no guest to log in to). Its
own process, so that a failpoint or a test can SIGKILL it mid-job; exits with the job's exit code."""

from __future__ import annotations

import sys
from pathlib import Path

from crane_iac.engine.workspace import Workspace
from crane_iac.jobs.cluster import StackCluster
from crane_iac.jobs.jobfile import load_job
from crane_iac.jobs.journal import Journal
from crane_iac.jobs.pipeline import Pipeline
from crane_iac.jobs.remote import LocalHead


def run(project: Path, jobfile: Path, head: Path) -> int:
    job = load_job(jobfile)
    with Workspace.open(project, job.stack) as ws:
        cluster = StackCluster(ws, job.cluster, connect=lambda _ws, _name: LocalHead(head))
        return Pipeline(job, Journal(ws.store, ws.name, job.name), cluster).run_interruptible()


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
