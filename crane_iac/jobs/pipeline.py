"""The pipeline: cluster → upload → build → run → fetch → release, a progress line per step, each step journalled
before it starts and once it finished (journal.py), so that a run that dies anywhere is finished by the next one:
a finished step is never done again (the upload above all), a step that was under way is done again, except the
run, which is attached to (remote.py: the command runs detached on the head and outlives crane).

The job's exit code is the command's (or the build's, when the build fails; then the command does not run). The
outputs and the command's log (``job.log``) are fetched whatever the exit code, and the cluster is released when
the job file says so, whatever the exit code too. Failpoints ``job-after-<step>`` (``CRANE_FAILPOINT``) kill crane
right after a step is recorded finished: the crash tests' resume points.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

from crane_iac.engine import failpoints
from crane_iac.jobs.jobfile import JobFile
from crane_iac.jobs.journal import STEPS, JobError, JobRecord, Journal
from crane_iac.jobs.remote import LOG, Head

#: the name the command's log (its stdout and stderr) gets in the output directory
LOG_NAME = "job.log"


class Cluster(Protocol):
    address: str

    def ensure(self) -> dict[str, Any]: ...

    def release(self) -> dict[str, Any]: ...

    def connect(self) -> Head: ...


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


class Pipeline:
    """One ``crane job run``: ``job`` on ``cluster``, journalled by ``journal``; progress to ``out``, the job's own
    output (the build's and the command's) to ``sink``."""

    def __init__(self, job: JobFile, journal: Journal, cluster: Cluster, *, out: TextIO | None = None,
                 sink: BinaryIO | None = None) -> None:
        self.job, self.journal, self.cluster = job, journal, cluster
        self.out = out or sys.stdout
        self.sink = sink
        self._head: Head | None = None

    @property
    def head(self) -> Head:
        if self._head is None:
            self._head = self.cluster.connect()
        return self._head

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run_interruptible(self) -> int:
        """``run``, where Ctrl-C (SIGINT) ends crane with 130 and says how to go on: what finished is recorded, and
        a command started on the head goes on there (it was started detached), so that the next ``crane job run``
        of the file attaches to it rather than starting it again."""
        try:
            return self.run()
        except KeyboardInterrupt:
            print(f"\ninterrupted: what finished is recorded, and a job started on the head goes on there; "
                  f"`crane job run {self.job.path}` resumes (attaching to it), `crane job cancel {self.job.name}` "
                  "stops it", file=sys.stderr, flush=True)
            return 130

    def run(self) -> int:
        job = self.job
        record, resumed = self.journal.begin(jobfile=str(job.path), digest=job.digest, cluster=self.cluster.address)
        if record.steps["upload"].status != "done":
            # a file to upload that is missing is found before the cluster is made for nothing; a job that uploaded
            # already needs its sources no more
            self._check_uploads("nothing was uploaded; put the files right and run the job again" if resumed else
                                "nothing was done; put the files right and run the job again")
        if resumed:
            self.say(f"job {job.name} ({record.id}): resuming at step {record.pending()[0]} (run {record.runs})")
        else:
            self.say(f"job {job.name} ({record.id}): on {self.cluster.address} of stack {record.stack}")
        for number, step in enumerate(STEPS, 1):
            entry = record.steps[step]
            prefix = f"[{number}/{len(STEPS)}] {step}:"
            if entry.status in ("done", "skipped"):
                self.say(f"{prefix} {'done' if entry.status == 'done' else 'skipped'} earlier "
                         f"({entry.finished_at}): not again")
                continue
            started = time.monotonic()
            said = getattr(self, f"_{step}")(record, prefix)
            if said is not None:
                self.say(f"{prefix} {said} ({time.monotonic() - started:.1f} s)")
            failpoints.hit(f"job-after-{step}")
            if record.ended:  # cancelled meanwhile
                self.say(f"job {job.name} ({record.id}): cancelled")
                return 143
        code = self._exit_code(record)
        self.journal.end(record, "succeeded" if code == 0 else "failed", code)
        self.say(f"job {job.name} ({record.id}): {'succeeded' if code == 0 else f'failed, exit code {code}'}; "
                 f"results in {job.output_dir}")
        return code

    @staticmethod
    def _exit_code(record: JobRecord) -> int:
        for step in ("build", "run", "fetch"):
            code = record.steps[step].detail.get("exit_code")
            if code:
                return int(code)
        return 0

    def _check_uploads(self, then: str) -> None:
        """Each file to upload that is not there, named with its line in the job file; ``then`` says what that
        left undone."""
        problems = self.job.missing()
        if problems:
            raise JobError("\n".join(problems) + f"\n{then}")

    # the steps: each records itself and returns its progress line (None: it printed its own)

    def _cluster(self, record: JobRecord, prefix: str) -> str:
        self.journal.start(record, "cluster")
        self.say(f"{prefix} planning {self.cluster.address}")
        done = self.cluster.ensure()
        self.journal.finish(record, "cluster", **done)
        return "up to date" if not done["changes"] else f"applied {done['changes']} change(s)"

    def _upload(self, record: JobRecord, prefix: str) -> str:
        self._check_uploads("nothing was uploaded")
        if not record.work_dir:
            record.work_dir = f"{self.head.work_dir.rstrip('/')}/{self.job.name}-{record.id}"
        files = [f.path for f in self.job.uploads]
        self.journal.start(record, "upload", files=[f.name for f in files])
        self.head.upload(files, record.work_dir)
        size = sum(f.stat().st_size for f in files)
        self.journal.finish(record, "upload", bytes=size)
        return f"{len(files)} file(s), {_size(size)} → {self.head.label}:{record.work_dir}"

    def _build(self, record: JobRecord, prefix: str) -> str:
        if self.job.build is None:
            self.journal.finish(record, "build", "skipped", reason="no build command")
            return "no build command"
        self.journal.start(record, "build", command=self.job.build)
        self.say(f"{prefix} {self.job.build}")
        code = self.head.stream(f"cd {_quote(record.work_dir)} && {self.job.build}", self.sink)
        self.journal.finish(record, "build", exit_code=code)
        return "built" if code == 0 else f"failed, exit code {code}"

    def _run(self, record: JobRecord, prefix: str) -> str:
        if record.steps["build"].detail.get("exit_code"):
            self.journal.finish(record, "run", "skipped", reason="the build failed")
            return "not run: the build failed"
        entry = record.steps["run"]
        if entry.status == "running" and "pgid" in entry.detail:
            self.say(f"{prefix} attaching to process group {entry.detail['pgid']} on {self.head.label}, started "
                     f"{entry.started_at}")
        else:
            self.journal.start(record, "run", command=self.job.command)
            pgid, fresh = self.head.start(record.work_dir, self.job.script)
            self.journal.note(record, "run", pgid=pgid)
            if record.ended:  # cancelled while it was being started: it stops at once
                self.head.cancel(record.work_dir)
                return "cancelled"
            self.say(f"{prefix} {self.job.command}" + ("" if fresh else
                                                       f" (started already, process group {pgid}: attaching)"))
        code = self.head.attach(record.work_dir, self.sink)
        if code is None:
            now = self.journal.read()
            if now is not None and now.status == "cancelled":
                record.status = "cancelled"
                return "cancelled"
            self.journal.finish(record, "run", "failed", exit_code=255, reason="its process is gone without an "
                                "exit code (killed, or the head restarted)")
            return "the job's process is gone without an exit code (killed, or the head restarted)"
        self.journal.finish(record, "run", exit_code=code)
        return "exit code 0" if code == 0 else f"failed, exit code {code}"

    def _fetch(self, record: JobRecord, prefix: str) -> str:
        self.journal.start(record, "fetch")
        names = list(self.job.outputs)
        missing = self.head.missing(record.work_dir, [*names, LOG])
        present = [n for n in names if n not in missing]
        local = self.job.output_dir
        logged = LOG not in missing  # none when the command did not run
        missing = [n for n in missing if n != LOG]
        self.head.fetch(record.work_dir, [*present, *([LOG] if logged else [])], local)
        if logged:
            Path(local / Path(LOG).name).replace(local / LOG_NAME)
        detail: dict[str, Any] = {"files": present, "missing": missing}
        if missing and not self._exit_code(record):
            detail["exit_code"] = 1
        self.journal.finish(record, "fetch", **detail)
        line = f"{len(present)} file(s){f' and {LOG_NAME}' if logged else ''} → {local}"
        return line + (f"; not on the head: {', '.join(missing)}" if missing else "")

    def _release(self, record: JobRecord, prefix: str) -> str:
        if not self.job.release:
            self.journal.finish(record, "release", "skipped", reason="release = false")
            return f"kept {self.cluster.address} (release = false)"
        self.journal.start(record, "release")
        self.say(f"{prefix} destroying {self.cluster.address}")
        done = self.cluster.release()
        self.journal.finish(record, "release", **done)
        return f"released {self.cluster.address}"


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)
