"""The apply engine on its own: plans made by ``plan_stack`` (or ``make_plan``) walked by ``Applier`` against the
in-memory provider double and a real SQLite state store, with no CLI and no text to parse."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from crane_iac.engine.apply import Applier, ApplyResult, StepEvent
from crane_iac.engine.endpoints import Endpoints
from crane_iac.engine.planning import plan_stack
from crane_iac.loader import LoadedStack
from crane_iac.objects import DEFAULT_ENDPOINT, Action, Desired, Owner, Verb
from crane_iac.planner.diff import PlanRequest, make_plan
from crane_iac.planner.model import Plan
from crane_iac.providers.endpoint import Endpoint
from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore
from tests.engine.memory_provider import MemoryProvider

STACK = "main"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


def thing(name: str, *deps: str, cbd: bool = False, physical: str | None = None, **properties: Any) -> Desired:
    """``thing.NAME``, depending on ``thing.DEP`` for each dep."""
    return Desired(f"thing.{name}", "thing", physical or name, properties or {"size": 1},
                   [f"thing.{d}" for d in deps], create_before_destroy=cbd)


def plan(store: StateStore, provider: MemoryProvider, desired: Sequence[Desired], *, destroy: bool = False) -> Plan:
    """What ``crane plan`` would plan: the state store read, the provider refreshed, both handed to the planner."""
    endpoints = Endpoints({DEFAULT_ENDPOINT: Endpoint(provider, [])}, {DEFAULT_ENDPOINT: "memory"})
    return plan_stack(STACK, LoadedStack("main.py", list(desired)), store.read(STACK), endpoints, destroy=destroy)


def apply(plan: Plan, store: StateStore, provider: MemoryProvider, *, parallelism: int = 4,
          stop: threading.Event | None = None, events: list[StepEvent] | None = None) -> ApplyResult:
    report = events.append if events is not None else (lambda _e: None)
    return Applier(plan, store, {DEFAULT_ENDPOINT: provider}, parallelism=parallelism, stop=stop,
                   report=report).run()


def recorded(store: StateStore) -> dict[str, str]:
    """State's records as address → name on the endpoint."""
    return {a: r.physical for a, r in store.read(STACK).resources.items()}


def before(calls: list[tuple[str, str]], first: tuple[str, str], then: tuple[str, str]) -> bool:
    return calls.index(first) < calls.index(then)


# -- ordering


def test_creates_follow_their_dependencies_and_deletes_precede_them(store: StateStore,
                                                                    provider: MemoryProvider) -> None:
    stack = [thing("net"), thing("disk", "net"), thing("vm", "disk", "net"), thing("other")]
    result = apply(plan(store, provider, stack), store, provider)
    assert result.ok and result.counts() == {Verb.CREATED: 4}
    calls = provider.verbs()
    assert sorted(calls) == [("create", "disk"), ("create", "net"), ("create", "other"), ("create", "vm")]
    assert before(calls, ("create", "net"), ("create", "disk"))
    assert before(calls, ("create", "disk"), ("create", "vm"))
    assert recorded(store) == {"thing.net": "net", "thing.disk": "disk", "thing.vm": "vm", "thing.other": "other"}
    assert store.read(STACK).intents == {}  # every intent is cleared once its step is recorded
    owner = provider.objects["thing", "vm"]
    assert (owner.owner_stack, owner.owner_address) == (STACK, "thing.vm")  # crane's owner, for a later adoption

    provider.calls.clear()
    result = apply(plan(store, provider, stack, destroy=True), store, provider)
    assert result.ok and result.counts() == {Verb.DELETED: 4}
    calls = provider.verbs()
    assert before(calls, ("delete", "vm"), ("delete", "disk"))
    assert before(calls, ("delete", "disk"), ("delete", "net"))
    assert provider.objects == {} and recorded(store) == {}


def test_a_replaced_dependency_waits_for_its_dependents_to_let_go(store: StateStore, provider: MemoryProvider) -> None:
    apply(plan(store, provider, [thing("disk", image="a"), thing("vm", "disk")]), store, provider)
    provider.calls.clear()
    # a new image forces a new disk; the vm is updated in place to use it, and deleted nothing
    replanned = plan(store, provider, [thing("disk", image="b"), thing("vm", "disk", size=2)])
    assert {c.address: c.action for c in replanned.changes} == {"thing.disk": Action.DELETE_THEN_CREATE,
                                                                "thing.vm": Action.UPDATE}
    result = apply(replanned, store, provider)
    assert result.ok and result.counts() == {Verb.REPLACED: 1, Verb.UPDATED: 1}
    calls = provider.verbs()
    assert before(calls, ("delete", "disk"), ("create", "disk"))  # delete-then-create: the old one goes first
    assert before(calls, ("create", "disk"), ("update", "vm"))
    assert provider.objects["thing", "disk"].properties == {"image": "b"}


def test_create_before_destroy_creates_the_new_object_first(store: StateStore, provider: MemoryProvider) -> None:
    apply(plan(store, provider, [thing("web", cbd=True), thing("app", "web")]), store, provider)
    old_id = store.read(STACK).resources["thing.web"].outputs["id"]
    provider.calls.clear()
    # a new name forces a replacement; with create_before_destroy both exist for a while
    replanned = plan(store, provider, [thing("web", cbd=True, physical="web-2"), thing("app", "web")])
    [change] = replanned.changes
    assert (change.action, change.from_physical) == (Action.CREATE_THEN_DELETE, "web")
    result = apply(replanned, store, provider)
    assert result.ok and result.counts() == {Verb.REPLACED: 1}
    assert provider.verbs() == [("create", "web-2"), ("delete", "web")]
    assert set(provider.objects) == {("thing", "web-2"), ("thing", "app")}
    record = store.read(STACK).resources["thing.web"]
    assert record.physical == "web-2" and record.outputs["id"] != old_id
    assert store.read(STACK).intents == {}


# -- a step that fails


def test_a_failed_step_skips_its_dependents_and_the_rest_goes_on(store: StateStore, provider: MemoryProvider) -> None:
    stack = [thing("bad"), thing("needs-bad", "bad"), thing("needs-needs-bad", "needs-bad"),
             thing("good"), thing("needs-good", "good"), *(thing(f"free-{i}") for i in range(6))]
    provider.fail("create", "bad", "no space left in the pool")
    events: list[StepEvent] = []
    result = apply(plan(store, provider, stack), store, provider, parallelism=3, events=events)
    assert not result.ok and not result.interrupted and result.not_started == []
    assert [(e.address, e.verb, e.detail) for e in result.failed] == [
        ("thing.bad", Verb.FAILED, "no space left in the pool")]
    assert sorted((e.address, e.detail) for e in result.skipped) == [
        ("thing.needs-bad", "thing.bad failed"), ("thing.needs-needs-bad", "thing.bad failed")]
    assert result.counts() == {Verb.CREATED: 8}
    assert [e for e in events if e.verb is Verb.FAILED] == result.failed  # reported as well as counted
    # the skipped were never asked for; the independent branches were all made
    assert ("create", "needs-bad") not in provider.verbs() and ("create", "needs-good") in provider.verbs()
    state = store.read(STACK)
    assert "thing.bad" not in state.resources and "thing.needs-bad" not in state.resources
    assert len(state.resources) == 8
    assert set(state.intents) == {"thing.bad", "thing.needs-bad", "thing.needs-needs-bad"}  # not done: still intended

    # the next apply does only what is left
    provider.calls.clear()
    again = apply(plan(store, provider, stack), store, provider)
    assert again.ok and again.counts() == {Verb.CREATED: 3}
    assert provider.verbs() == [("create", "bad"), ("create", "needs-bad"), ("create", "needs-needs-bad")]
    assert store.read(STACK).intents == {}


def test_a_failed_update_keeps_the_old_record(store: StateStore, provider: MemoryProvider) -> None:
    apply(plan(store, provider, [thing("vm", size=1)]), store, provider)
    provider.fail("update", "vm")
    result = apply(plan(store, provider, [thing("vm", size=2)]), store, provider)
    assert [e.address for e in result.failed] == ["thing.vm"] and result.counts() == {}
    assert store.read(STACK).resources["thing.vm"].properties == {"size": 1}


# -- an interrupted apply


def interrupt(provider: MemoryProvider, stop: threading.Event, *, fail: str | None = None) -> threading.Thread:
    """Hold the creates of ``a`` and ``b`` (the only steps ready at first); once both are under way, set ``stop``,
    make ``fail`` fail if given, and let both go on."""
    gates = [provider.block("create", "a"), provider.block("create", "b")]

    def run() -> None:
        for gate in gates:
            assert gate.entered.wait(10)
        stop.set()
        if fail is not None:
            provider.fail("create", fail, f"{fail} refused while stopping")
        for gate in gates:
            gate.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


INTERRUPTED = [thing("a"), thing("b"), thing("c", "a"), thing("d", "b"), thing("e", "c")]


def test_an_interrupt_starts_nothing_new_and_records_what_was_in_flight(store: StateStore,
                                                                        provider: MemoryProvider) -> None:
    stop = threading.Event()
    the_plan = plan(store, provider, INTERRUPTED)
    helper = interrupt(provider, stop)
    events: list[StepEvent] = []
    result = apply(the_plan, store, provider, parallelism=2, stop=stop, events=events)
    helper.join()
    assert result.interrupted and not result.ok
    assert result.not_started == ["thing.c", "thing.d", "thing.e"]
    assert sorted(e.address for e in result.done) == ["thing.a", "thing.b"] and not result.failed
    assert sorted(provider.verbs()) == [("create", "a"), ("create", "b")]  # nothing else was asked for
    assert {e.address for e in events if e.verb.starting} == {"thing.a", "thing.b"}
    assert recorded(store) == {"thing.a": "a", "thing.b": "b"}
    assert set(store.read(STACK).intents) == {"thing.c", "thing.d", "thing.e"}


def test_an_in_flight_step_that_fails_after_an_interrupt_is_reported(store: StateStore,
                                                                     provider: MemoryProvider) -> None:
    stop = threading.Event()
    the_plan = plan(store, provider, INTERRUPTED)
    helper = interrupt(provider, stop, fail="b")
    events: list[StepEvent] = []
    result = apply(the_plan, store, provider, parallelism=2, stop=stop, events=events)
    helper.join()
    assert result.interrupted
    assert [(e.address, e.detail) for e in result.failed] == [("thing.b", "b refused while stopping")]
    assert [e for e in events if e.verb is Verb.FAILED] == result.failed
    assert [e.address for e in result.done] == ["thing.a"]
    assert recorded(store) == {"thing.a": "a"}


# -- make_plan directly: the planner's view of an adopted object


def test_an_object_crane_made_but_did_not_record_is_adopted_not_created(store: StateStore,
                                                                        provider: MemoryProvider) -> None:
    provider.put("thing", "vm", {"size": 1}, Owner(STACK, "thing.vm"))
    the_plan = plan(store, provider, [thing("vm")])
    [change] = the_plan.changes
    assert (change.action, change.reason is not None) == (Action.NOOP, True)
    result = apply(the_plan, store, provider)
    assert result.counts() == {Verb.ADOPTED: 1} and provider.calls == []
    assert recorded(store) == {"thing.vm": "vm"}


def test_make_plan_without_refresh_trusts_state(store: StateStore, provider: MemoryProvider) -> None:
    apply(plan(store, provider, [thing("vm")]), store, provider)
    provider.objects.clear()  # gone outside crane, but the plan does not look
    state = store.read(STACK)
    no_refresh, problems = make_plan(PlanRequest(STACK, state.lineage, state.serial, refreshed=False),
                                     [thing("vm", size=3)], state.resources, None, {DEFAULT_ENDPOINT: provider})
    assert problems == [] and [(c.address, c.action) for c in no_refresh.changes] == [("thing.vm", Action.UPDATE)]


def test_a_step_in_flight_when_the_loop_is_broken_off_is_reported_when_it_fails(store: StateStore,
                                                                                provider: MemoryProvider) -> None:
    """Ctrl-C where no signal handler sets ``stop`` (an engine driven from Python) raises KeyboardInterrupt in the
    apply loop: what is in flight still finishes and is recorded, and one that fails says so, not silently."""
    stop = threading.Event()
    gate = provider.block("create", "b")
    events: list[StepEvent] = []

    def report(event: StepEvent) -> None:
        events.append(event)
        if (event.address, event.verb) == ("thing.a", Verb.CREATED):  # b is held at its gate meanwhile
            assert gate.entered.wait(10)
            stop.set()
            provider.fail("create", "b", "b refused while stopping")
            gate.release()
            raise KeyboardInterrupt

    applier = Applier(plan(store, provider, INTERRUPTED), store, {DEFAULT_ENDPOINT: provider}, parallelism=2,
                      stop=stop, report=report)
    with pytest.raises(KeyboardInterrupt):
        applier.run()
    assert [(e.address, e.verb, e.detail) for e in events if not e.verb.starting] == [
        ("thing.a", Verb.CREATED, ""), ("thing.b", Verb.FAILED, "b refused while stopping")]
    assert recorded(store) == {"thing.a": "a"}
    assert sorted(provider.verbs()) == [("create", "a"), ("create", "b")]


def test_a_cycle_in_the_apply_graph_fails_loudly_instead_of_reporting_success(store: StateStore,
                                                                              provider: MemoryProvider) -> None:
    """Two updates that wait for each other (no planner makes them today; one did until this issue) start
    nothing: the run must say they failed, not return ok with nothing done."""
    from crane_iac.planner.model import ResourceChange

    cyclic = Plan(STACK, "", 0, changes=[
        ResourceChange("thing.a", "thing", "a", Action.UPDATE, before={"size": 1}, after={"size": 2},
                       dependencies=["thing.b"]),
        ResourceChange("thing.b", "thing", "b", Action.UPDATE, before={"size": 1}, after={"size": 2},
                       dependencies=["thing.a"]),
    ])
    events: list[StepEvent] = []
    result = apply(cyclic, store, provider, events=events)
    assert not result.ok and sorted(e.address for e in result.failed) == ["thing.a", "thing.b"]
    assert all("cycle in the apply graph" in e.detail for e in result.failed)
    assert [e.verb for e in events] == [Verb.FAILED, Verb.FAILED]
    assert provider.calls == []
