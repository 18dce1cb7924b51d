"""The job's cluster through the engine: applied (only it and what it needs: ``--target mpicluster.NAME``) when it
is not there or differs from its stack, reached as its exports say, and released (destroyed, with ``--target``)
when the job file asks. The same plan and apply as ``crane apply``, under the stack's lock."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crane_iac.console import failure_lines
from crane_iac.engine.workspace import PlanOptions, Workspace
from crane_iac.jobs.journal import JobError
from crane_iac.jobs.remote import Head, SshHead
from crane_iac.render import Progress


class StackCluster:
    """MPICluster ``name`` of the workspace's stack. ``connect`` makes the head from the cluster's exports and the
    stack's state (default: ``ssh_head``)."""

    def __init__(self, ws: Workspace, name: str, *,
                 connect: Callable[[Workspace, str], Head] | None = None, lock_timeout: float = 60.0) -> None:
        self.ws, self.name, self.lock_timeout = ws, name, lock_timeout
        self.address = f"mpicluster.{name}"
        self._connect = connect or ssh_head

    def ensure(self) -> dict[str, Any]:
        """Apply the cluster if the plan for it has changes; what was done."""
        return self._apply(destroy=False)

    def release(self) -> dict[str, Any]:
        """Destroy the cluster (and what only it uses is left: its network and pool are the stack's)."""
        return self._apply(destroy=True)

    def connect(self) -> Head:
        return self._connect(self.ws, self.name)

    def _apply(self, *, destroy: bool) -> dict[str, Any]:
        started = time.monotonic()
        with self.ws.locked("destroy" if destroy else "apply", lock_timeout=self.lock_timeout) as run:
            # a cluster the stack does not have is the planner's error on the target, naming the ones it has
            plan = run.plan(PlanOptions(targets=(self.address,), destroy=destroy))
            if not plan.has_changes:
                return {"changes": 0}
            progress = Progress(sys.stdout, live=False)
            try:
                result = run.apply(plan, report=progress.report)
            finally:
                progress.finish()
        if not result.ok:
            raise JobError(f"{'releasing' if destroy else 'applying'} {self.address} of stack {self.ws.name!r} "
                           f"failed:\n" + "\n".join(failure_lines(result)))
        return {"changes": len(result.done), "seconds": round(time.monotonic() - started, 1)}


def ssh_head(ws: Workspace, name: str) -> SshHead:
    """The head as the cluster's exports describe it: its address, the cluster user, the user key's path (from the
    exported ssh argv: ``ssh -i PATH user@head``), the work directory; its host key read from the shared disk,
    where the head wrote it (the shared volume's directory on this host), and pinned in a known_hosts of the
    project's ``.crane/jobs``."""
    outputs = ws.outputs().get(name)
    if not isinstance(outputs, dict) or "head" not in outputs:
        raise JobError(f"stack {ws.name!r} exports nothing for MPI cluster {name!r}: is it applied?")
    argv = outputs["ssh"]
    key = Path(argv[argv.index("-i") + 1])
    shared = ws.state().resources.get(f"mpicluster.{name}/volume.shared")
    path = shared.outputs.get("path") if shared is not None else None
    if not path:
        raise JobError(f"no shared directory recorded for mpicluster.{name}: apply the stack")
    pub = Path(path) / ".crane" / "hostkeys" / "head.pub"
    try:
        algorithm, value = pub.read_text().split()[:2]
    except (OSError, ValueError):
        raise JobError(f"the head's host key is not on the shared disk ({pub}): crane reaches the head only with "
                       "its key pinned; is the head running?") from None
    known = ws.project.root / ".crane" / "jobs" / f"{ws.name}-{name}.known_hosts"
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(f"{outputs['head']} {algorithm} {value}\n")
    return SshHead(address=outputs["head"], user=outputs["user"], key=key, known_hosts=known,
                   work_dir=outputs["work_dir"])
