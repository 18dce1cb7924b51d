"""Walk a plan: intents first, then provider calls with bounded parallelism, then state in batches.

Crash safety: every change's intent is recorded before any provider call; every
object is created with its owner in the hypervisor's metadata; state is written only
after the provider's checkpoint. A crash at any point leaves objects that the next
plan adopts (by owner or intent) or deletes as orphans, never duplicates.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from crane_iac.engine import failpoints
from crane_iac.errors import CraneError
from crane_iac.ipam.pools import Holder, Lease
from crane_iac.objects import Action, Outcome, Owner, Reach, Reason, Recorded, Verb, scope_properties
from crane_iac.planner.diff import Step, has_markers, order_changes, resolve_outputs
from crane_iac.planner.model import Phase, Plan, ResourceChange
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest
from crane_iac.state.base import Committed, Intent, RunInfo, StateStore, this_process

T = TypeVar("T")

#: How often (seconds) completed steps are made durable and recorded while an apply runs; stretched so that
#: checkpoints (which may rewrite a whole sandbox) never take more than a fifth of the run.
COMMIT_INTERVAL = 0.5
CHECKPOINT_SHARE = 0.2


@dataclass
class StepEvent:
    address: str
    verb: Verb
    elapsed: float = 0.0
    detail: str = ""


@dataclass
class ApplyResult:
    done: list[StepEvent] = field(default_factory=list)
    failed: list[StepEvent] = field(default_factory=list)
    skipped: list[StepEvent] = field(default_factory=list)
    #: steps never started because the run was interrupted (their resources are as they were)
    not_started: list[str] = field(default_factory=list)
    interrupted: bool = False
    serial: int = 0
    #: address-pool leases the apply gave back (the plan's ``leases_released``)
    released: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted

    def counts(self) -> dict[str, int]:
        """Resources by what happened to them: a replacement counts once, as replaced (not deleted and created)."""
        replaced = {e.address for e in self.done if e.verb is Verb.REPLACED}
        counts: dict[str, int] = {}
        for event in self.done:
            if event.verb is Verb.DELETED and event.address in replaced:
                continue
            counts[event.verb] = counts.get(event.verb, 0) + 1
        return counts


class InlineExecutor(Executor):
    """Runs each step at submission, in the calling thread: for providers that gain nothing from threads."""

    def __init__(self, max_workers: int = 1, thread_name_prefix: str = "") -> None:
        del max_workers, thread_name_prefix

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


#: what a step of each outcome reports when it starts and when it is done
_VERBS = {Outcome.CREATE: (Verb.CREATING, Verb.CREATED), Outcome.UPDATE: (Verb.UPDATING, Verb.UPDATED),
          Outcome.REPLACE: (Verb.CREATING, Verb.REPLACED), Outcome.DELETE: (Verb.DELETING, Verb.DELETED),
          Outcome.ADOPT: (Verb.ADOPTING, Verb.ADOPTED), Outcome.IMPORT: (Verb.IMPORTING, Verb.IMPORTED),
          Outcome.FORGET: (Verb.FORGETTING, Verb.FORGOTTEN)}


def _step_outcome(change: ResourceChange, phase: Phase) -> Outcome:
    if phase is Phase.DELETE:
        return Outcome.FORGET if change.reason is Reason.FORGET else Outcome.DELETE
    if change.action is Action.NOOP:
        return Outcome.IMPORT if change.reason is Reason.IMPORTED else Outcome.ADOPT
    if change.action is Action.UPDATE:
        return Outcome.UPDATE
    return Outcome.REPLACE if change.action.is_replace else Outcome.CREATE


class Applier:
    """Applies one plan to its endpoints' providers and one state store."""

    def __init__(self, plan: Plan, store: StateStore, providers: Mapping[str, Provider], *, parallelism: int = 10,
                 outputs: dict[str, dict[str, Any]] | None = None,
                 report: Callable[[StepEvent], None] = lambda _e: None,
                 stop: threading.Event | None = None, run: RunInfo | None = None,
                 endpoint_configs: Mapping[str, str] | None = None) -> None:
        """``stop``, once set (the first Ctrl-C), starts no new step: the ones in flight finish and are recorded.
        ``run`` names the locked run in every commit, so the history shows the apply's serials as one run.
        ``endpoint_configs``: each endpoint's type and settings, which the records it makes keep."""
        self.plan = plan
        self.store = store
        self.providers = providers
        self.parallelism = max(1, parallelism)
        used = {c.endpoint for c in plan.changes} | {c.from_endpoint for c in plan.changes if c.from_endpoint}
        #: calls at once per endpoint: a sandbox serialises its calls, a real host takes ``parallelism``
        self.slots = {name: threading.BoundedSemaphore(providers[name].max_parallelism or self.parallelism)
                      for name in used if name in providers}
        self.workers = min(self.parallelism, sum(providers[name].max_parallelism or self.parallelism
                                                 for name in self.slots) or 1)
        self.outputs: dict[str, dict[str, Any]] = dict(outputs or {})
        self._report = report
        #: progress comes from the steps' threads, the rest from the loop's: one event at a time
        self._reporting = threading.Lock()
        self.stop = stop or threading.Event()
        self.run_info = run
        self.configs: Mapping[str, str] = endpoint_configs or {}
        self.changes = {c.address: c for c in plan.changes}
        #: records made by this apply, by address (a create_before_destroy's second half records the new object)
        self.records: dict[str, Recorded] = {}

    def report(self, event: StepEvent) -> None:
        with self._reporting:
            self._report(event)

    def _run_step(self, step: Step) -> Committed:
        change = self.changes[step.address]
        outcome = _step_outcome(change, step.phase)
        started = time.monotonic()

        def progress(note: str) -> None:
            self.report(StepEvent(change.address, Verb.PROGRESS, time.monotonic() - started, note))

        if outcome is Outcome.FORGET:
            return Committed(change.address, outcome, None, change.before)
        failpoints.before_step(change.address)
        if outcome is Outcome.DELETE:
            endpoint = change.from_endpoint or change.endpoint
            with self.slots[endpoint]:
                self.providers[endpoint].delete(DeleteRequest(change.kind, change.from_physical or change.physical,
                                                              change.before or {}, progress))
            failpoints.hit("after-mutation")
            if change.action is Action.CREATE_THEN_DELETE:  # the old half goes; the record is the new object's
                return Committed(change.address, outcome, self.records[change.address], change.before)
            return Committed(change.address, outcome, None, change.before, final=not change.action.is_replace)
        after = change.after or {}
        if has_markers(after):  # most resources use no outputs: skip the walk
            after = resolve_outputs(after, self.outputs, keep_unknown=False)
        if outcome in (Outcome.ADOPT, Outcome.IMPORT):
            live_props = change.before or {}
            outputs = change.outputs if change.outputs is not None else self.outputs.get(change.address, {})
            self.outputs[change.address] = outputs
            record = Recorded(change.address, change.kind, change.physical, live_props, outputs,
                              change.dependencies, change.protect, change.endpoint,
                              self.configs.get(change.endpoint, ""))
            return Committed(change.address, outcome, record, None)
        if outcome is Outcome.UPDATE and all(f.reach is Reach.STATE for f in change.fields):
            # only crane's own record changes (protect, a network's note of its leased subnets): the endpoint is
            # not called, and the record takes the new values
            properties = dict(change.before or {})
            for f in change.fields:
                if f.name in after:
                    properties[f.name] = after[f.name]
                else:  # a property the stack no longer sets (protect is not one: it is the record's own)
                    properties.pop(f.name, None)
            # a record that takes what was read takes the outputs read with it (ResourceChange.outputs)
            outputs = change.outputs if change.outputs is not None else self.outputs.get(change.address, {})
            self.outputs[change.address] = outputs
            record = Recorded(change.address, change.kind, change.physical, properties,
                              outputs, change.dependencies, change.protect,
                              change.endpoint, self.configs.get(change.endpoint, ""))
            self.records[change.address] = record
            return Committed(change.address, outcome, record, change.before)
        owner = Owner(self.plan.stack, change.address)
        provider = self.providers[change.endpoint]
        with self.slots[change.endpoint]:
            if outcome is Outcome.UPDATE:
                live = provider.update(UpdateRequest(change.kind, change.physical, change.before or {}, after,
                                                     progress))
            else:
                live = provider.create(CreateRequest(change.kind, change.physical, after, owner, progress))
        failpoints.hit("after-mutation")
        self.outputs[change.address] = live.outputs
        record = Recorded(change.address, change.kind, change.physical, live.properties, live.outputs,
                          change.dependencies, change.protect, change.endpoint, self.configs.get(change.endpoint, ""))
        before = change.before if change.action is Action.UPDATE else None
        self.records[change.address] = record
        return Committed(change.address, outcome, record, before)

    def run(self) -> ApplyResult:
        # every write says which serial it follows: if another writer got in (someone broke this run's lock), the
        # store refuses it (StaleStateError) rather than record over theirs; objects made meanwhile carry their owner
        result = ApplyResult(serial=self.plan.serial)
        if self.plan.moves:  # state only, before anything else: the plan's addresses are the new ones
            result.serial = self.store.move(self.plan.stack, [(old, new) for old, new in self.plan.moves],
                                            expected_serial=result.serial, run=self.run_info)
            for old, new in self.plan.moves:
                if old in self.outputs:
                    self.outputs[new] = self.outputs.pop(old)
                result.done.append(StepEvent(new, Verb.MOVED, detail=f"from {old}"))
                self.report(result.done[-1])
        graph = order_changes(self.plan.changes)
        stepped = {s.address for s in graph}
        # an intent carries what identifies the object on the host (kind, name, and a volume's pool)
        intents = [Intent(c.address, c.kind, c.physical, c.action, scope_properties(c.kind, c.after or c.before or {}),
                          c.endpoint)
                   for c in self.plan.changes if c.address in stepped]
        self.store.record_intents(self.plan.stack, intents)
        failpoints.hit("after-intents")
        dependents: dict[Step, list[Step]] = {s: [] for s in graph}
        waiting = {s: set(prereqs) for s, prereqs in graph.items()}
        for step, prereqs in graph.items():
            for prereq in prereqs:
                dependents[prereq].append(step)
        ready = [s for s, prereqs in waiting.items() if not prereqs]
        running: dict[Future[Committed], tuple[Step, float]] = {}
        pending_commit: list[Committed] = []
        last_commit = time.monotonic()
        interval = COMMIT_INTERVAL
        blocked: set[Step] = set()
        launched: set[Step] = set()

        def fail(address: str, elapsed: float, detail: str) -> None:
            result.failed.append(StepEvent(address, Verb.FAILED, elapsed, detail))
            self.report(result.failed[-1])

        def skip_dependents(step: Step, reason: str) -> None:
            stack = list(dependents[step])
            while stack:
                nxt = stack.pop()
                if nxt in blocked:
                    continue
                blocked.add(nxt)
                result.skipped.append(StepEvent(nxt.address, Verb.SKIPPED, detail=reason))
                self.report(result.skipped[-1])
                stack.extend(dependents[nxt])

        def flush() -> None:
            nonlocal last_commit, interval
            if pending_commit:
                started = time.monotonic()
                for name in self.slots:
                    self.providers[name].checkpoint()
                interval = max(COMMIT_INTERVAL, (time.monotonic() - started) / CHECKPOINT_SHARE)
                failpoints.hit("after-checkpoint")
                result.serial = self.store.commit(self.plan.stack, list(pending_commit),
                                                  expected_serial=result.serial, run=self.run_info)
                pending_commit.clear()
                failpoints.hit("after-commit")
            last_commit = time.monotonic()

        finished: queue.SimpleQueue[Future[Committed]] = queue.SimpleQueue()
        workers = self.workers
        pool_type = InlineExecutor if workers == 1 else ThreadPoolExecutor
        with pool_type(max_workers=workers, thread_name_prefix="crane-apply") as pool:
            try:
                while (ready and not self.stop.is_set()) or running:
                    while ready and len(running) < workers and not self.stop.is_set():
                        step = ready.pop()
                        change = self.changes[step.address]
                        verb = _VERBS[_step_outcome(change, step.phase)][0]
                        self.report(StepEvent(step.address, verb))
                        launched.add(step)
                        future = pool.submit(self._run_step, step)
                        running[future] = (step, time.monotonic())
                        future.add_done_callback(finished.put)
                    done = []
                    with contextlib.suppress(queue.Empty):
                        done.append(finished.get(timeout=interval))
                        while True:
                            done.append(finished.get_nowait())
                    for future in done:
                        step, started = running.pop(future)
                        elapsed = time.monotonic() - started
                        try:
                            committed = future.result()
                        except CraneError as exc:
                            fail(step.address, elapsed, str(exc))
                            skip_dependents(step, f"{step.address} failed")
                            continue
                        pending_commit.append(committed)
                        note = self.changes[step.address].note if step.phase is Phase.APPLY else ""
                        event = StepEvent(step.address, _VERBS[committed.action][1], elapsed, note)
                        result.done.append(event)
                        self.report(event)
                        for nxt in dependents[step]:
                            waiting[nxt].discard(step)
                            if not waiting[nxt] and nxt not in blocked:
                                ready.append(nxt)
                    if time.monotonic() - last_commit >= interval:
                        flush()
            finally:
                # the loop was left by an exception (a KeyboardInterrupt where no handler sets ``stop``, a state
                # write refused): what is in flight still finishes, is recorded and reported, failures included
                try:
                    for future, (step, started) in list(running.items()):
                        try:
                            committed = future.result()
                        except Exception as exc:  # a refusal or a bug: reported; the exception under way goes on
                            fail(step.address, time.monotonic() - started, str(exc))
                            continue
                        pending_commit.append(committed)
                        result.done.append(StepEvent(step.address, _VERBS[committed.action][1],
                                                     time.monotonic() - started))
                        self.report(result.done[-1])
                finally:
                    flush()
        unstarted = sorted({s.address for s in graph if s not in launched and s not in blocked})
        if self.stop.is_set():
            result.not_started = unstarted
            result.interrupted = bool(unstarted)
        else:
            # every step ran, failed or was skipped; one that waits still waits on a cycle of the apply graph (a
            # planner bug): it fails loudly rather than the run doing nothing and calling itself complete
            for address in unstarted:
                fail(address, 0.0, "never started: it waits on a cycle in the apply graph (a crane bug; please "
                                   "report it with `crane plan --json`); nothing was done to it")
        if result.ok:  # a targeted apply updates the outputs too (what it did not touch resolves as before)
            outputs = resolve_outputs(self.plan.outputs, self.outputs, keep_unknown=False)
            # the leases the plan gives back go with the last commit: only once every change is made (a resource
            # that no longer takes a value used it until its update), and a crash before leaves them listed again
            released = [Lease(x.pool, x.value, Holder(self.plan.stack, x.address, x.slot))
                        for x in self.plan.leases_released]
            result.serial = self.store.commit(self.plan.stack, [], outputs, expected_serial=result.serial,
                                              run=self.run_info, released=released)
            result.released = len(released)
            for dropped in self.plan.settings_dropped:  # a component's settings go with it, each in the history
                result.serial = self.store.set_setting(
                    self.plan.stack, dropped["key"], None, by=this_process(),
                    why=f"{dropped['component']} destroyed: its settings go with it", expected_serial=result.serial,
                    run=self.run_info)
        return result
