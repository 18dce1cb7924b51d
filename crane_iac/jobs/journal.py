"""A job's journal: its record in the state store (``StateStore.record_job``), rewritten at every step, with a
``job`` line in the stack's history for each.

A record holds the job's ID, the job file's digest, its directory on the head, its status (``running`` until it
ends: ``succeeded``, ``failed`` or ``cancelled``), its exit code, and each step's status (``running``, ``done``,
``skipped``, ``failed``) with when it started and finished and what it did. A step is written ``running`` before it
starts and ``done`` once it finished: the steps a new run does are those not ``done`` (or ``skipped``), in order.
A job whose record is ``running`` is resumed by the next ``crane job run`` of the same job file; one that ended is
run afresh, with a new ID and directory.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from crane_iac.errors import CraneError
from crane_iac.state.base import StateStore, this_process

#: the pipeline's steps, in order
STEPS = ("cluster", "upload", "build", "run", "fetch", "release")
FINISHED = ("done", "skipped")
ENDED = ("succeeded", "failed", "cancelled")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Step:
    status: str = "pending"
    started_at: str = ""
    finished_at: str = ""
    #: what it did (files and bytes uploaded, the changes applied, the exit code…) or why it failed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRecord:
    name: str
    id: str
    jobfile: str
    digest: str
    stack: str
    cluster: str
    #: the job's directory on the head, ``<work_dir>/<name>-<id>``: known once the cluster is (the upload's)
    work_dir: str = ""
    status: str = "running"
    exit_code: int | None = None
    started_at: str = field(default_factory=now)
    finished_at: str = ""
    #: how many ``crane job run``s worked on it (1, then one more for each resume)
    runs: int = 1
    steps: dict[str, Step] = field(default_factory=lambda: {name: Step() for name in STEPS})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        fields = dict(data)
        fields["steps"] = {name: Step(**fields.get("steps", {}).get(name, {})) for name in STEPS}
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def pending(self) -> list[str]:
        """The steps a run has still to do, in order."""
        return [name for name in STEPS if self.steps[name].status not in FINISHED]


class JobError(CraneError):
    """A job that cannot go on: the message says why and what to do."""


class Journal:
    """Job ``name``'s record in ``stack``'s state, and the writes that move it on."""

    def __init__(self, store: StateStore, stack: str, name: str) -> None:
        self.store, self.stack, self.name = store, stack, name

    def read(self) -> JobRecord | None:
        found = self.store.jobs(self.stack).get(self.name)
        return JobRecord.from_json(found) if found is not None else None

    def begin(self, *, jobfile: str, digest: str, cluster: str) -> tuple[JobRecord, bool]:
        """The job to work on and whether it is resumed: the interrupted one of this job file, else a new one.
        An interrupted job whose file has changed is refused: its finished steps were the old file's."""
        record = self.read()
        # an interrupted job that finished no step has nothing to keep: it starts afresh, with the file as it is
        if record is not None and not record.ended and any(s.status == "done" for s in record.steps.values()):
            if record.digest != digest:
                raise JobError(f"job {self.name!r} ({record.id}) was interrupted at step "
                               f"{record.pending()[0]!r} and its job file has changed since: restore "
                               f"{jobfile} to finish it, or `crane job cancel {self.name}` to give it up")
            record.runs += 1
            self._write(record, {"step": "resume", "status": record.pending()[0], "run": record.runs})
            return record, True
        job_id = secrets.token_hex(4)
        record = JobRecord(self.name, job_id, jobfile, digest, self.stack, cluster)
        self._write(record, {"step": "begin", "status": "running"})
        return record, False

    def start(self, record: JobRecord, step: str, **detail: Any) -> None:
        record.steps[step] = Step("running", now(), "", dict(detail))
        self._write(record, {"step": step, "status": "running"})

    def note(self, record: JobRecord, step: str, **detail: Any) -> None:
        """Add to a running step's detail (the run step's process ID once it started on the head)."""
        record.steps[step].detail.update(detail)
        self._write(record, {"step": step, "status": record.steps[step].status, **detail})

    def finish(self, record: JobRecord, step: str, status: str = "done", **detail: Any) -> None:
        entry = record.steps[step]
        entry.status, entry.finished_at = status, now()
        entry.started_at = entry.started_at or entry.finished_at
        entry.detail.update(detail)
        self._write(record, {"step": step, "status": status})

    def end(self, record: JobRecord, status: str, exit_code: int | None) -> None:
        record.status, record.exit_code, record.finished_at = status, exit_code, now()
        self._write(record, {"step": "end", "status": status, "exit_code": exit_code})

    def _write(self, record: JobRecord, line: Mapping[str, Any]) -> None:
        """Write ``record`` whole; a job cancelled meanwhile (``crane job cancel``, another process) stays
        cancelled: the record takes that status, and the pipeline stops at the end of its step."""
        if record.status == "running":
            stored = self.read()
            if stored is not None and stored.id == record.id and stored.status == "cancelled":
                record.status, record.finished_at = stored.status, stored.finished_at
        self.store.record_job(self.stack, self.name, record.to_json(), line={"id": record.id, **line},
                              by=this_process())
