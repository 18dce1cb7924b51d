"""A locked stack, as ``Workspace.locked`` hands it out: plan against the state read under the lock, check a saved
plan, apply; what a plan is asked for (``PlanOptions``); and a saved plan read back (``read_plan``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crane_iac.errors import CraneError
from crane_iac.state.base import RunInfo, StackState, StateStore

if TYPE_CHECKING:
    from crane_iac.engine.apply import ApplyResult, StepEvent
    from crane_iac.engine.endpoints import Endpoints
    from crane_iac.ipam.pools import LeaseRecord
    from crane_iac.loader import LoadedStack
    from crane_iac.objects import Live
    from crane_iac.planner.model import Plan


@dataclass(frozen=True)
class PlanOptions:
    """What a plan is asked for: Terraform's -refresh, -target, -replace and -destroy."""

    refresh: bool = True
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    destroy: bool = False


@dataclass
class Run:
    """A locked stack: the state read under the lock, the stack as loaded against it, and the endpoints opened for
    changing them (None for state-only operations)."""

    #: the stack's name, its state store, and how to run the stack again with names pinned (a plan's second look)
    stack: str
    store: StateStore
    reload: Callable[[dict[str, str]], LoadedStack]
    lock_id: str
    state: StackState
    endpoints: Endpoints | None
    loaded: LoadedStack | None
    lives: list[Live] | None
    #: who runs what under the lock: every write of the run names it in the history
    info: RunInfo | None = None
    #: what address pools lease to the stack, as state held them when the stack was loaded
    leases: Sequence[LeaseRecord] = ()

    def plan(self, options: PlanOptions = PlanOptions()) -> Plan:
        assert self.endpoints is not None and self.loaded is not None
        from crane_iac.engine.planning import plan_stack

        return plan_stack(self.stack, self.loaded, self.state, self.endpoints, refresh=options.refresh,
                          targets=options.targets, replace=options.replace, destroy=options.destroy,
                          lives=self.lives if options.refresh else None, reload=self.reload, leases=self.leases)

    def check_saved(self, plan: Plan, source: str) -> None:
        """Refuse a saved plan made against other state (StalePlanError naming the serials)."""
        from crane_iac.engine.planning import check_saved_plan

        check_saved_plan(plan, self.state, source)

    def apply(self, plan: Plan, *, parallelism: int = 10, report: Callable[[StepEvent], None] = lambda _e: None,
              stop: threading.Event | None = None) -> ApplyResult:
        """Walk the plan (intents, provider calls, state in batches). ``stop``, once set, starts nothing new; what
        is in flight finishes and is recorded."""
        assert self.endpoints is not None
        from crane_iac.engine.apply import Applier
        from crane_iac.engine.retired import with_retired

        with_retired(self.state, self.endpoints, None)  # a saved plan's former endpoints, opened
        outputs = {a: r.outputs for a, r in self.state.resources.items()}
        return Applier(plan, self.store, self.endpoints, parallelism=parallelism, outputs=outputs, report=report,
                       stop=stop, run=self.info, endpoint_configs=self.endpoints.configs).run()


def read_plan(path: Path) -> Plan:
    """A plan saved with ``crane plan --out``; an unreadable or foreign file is a CraneError naming it."""
    from crane_iac.planner.model import Plan

    try:
        return Plan.from_json(path.read_text())
    except OSError as exc:
        raise CraneError(f"{path}: cannot read the plan: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CraneError(f"{path}: not a crane plan file ({exc})") from None
