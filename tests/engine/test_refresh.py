"""Matching what an endpoint has to the stack's addresses (``match_live``): by state, by crane's owner metadata, by
recorded intents; forgotten objects and another stack's objects are left alone, and name conflicts explained; state
fills in only what the endpoint cannot report."""

from __future__ import annotations

from typing import Any

from crane_iac.engine.refresh import deposed, match_live, refreshed_records
from crane_iac.objects import Action, Desired, FieldChange, Live, Outcome, Reason, Recorded
from crane_iac.planner.diff import PlanRequest, make_plan
from crane_iac.planner.model import Drift
from crane_iac.providers.endpoint import Endpoint
from crane_iac.state.base import Intent, StackState
from tests.engine.memory_provider import MemoryProvider

STACK = "main"


def state(*records: Recorded, intents: tuple[Intent, ...] = (), forgotten: tuple[Recorded, ...] = ()) -> StackState:
    return StackState(STACK, 3, "lineage", {r.address: r for r in records}, {i.address: i for i in intents}, {},
                      list(forgotten))


def live(name: str, owner: tuple[str, str] | None = None, **properties: object) -> Live:
    return Live("thing", name, dict(properties) or {"size": 1}, {"id": name}, *(owner or (None, None)))


def record(name: str, **properties: object) -> Recorded:
    return Recorded(f"thing.{name}", "thing", name, dict(properties) or {"size": 1})


def want(name: str) -> Desired:
    return Desired(f"thing.{name}", "thing", name, {"size": 1}, file="main.py", line=7)


def test_recorded_objects_match_by_name_and_unrecorded_ones_by_owner() -> None:
    lives = [live("web"), live("db", (STACK, "thing.db")), live("old", (STACK, "thing.old")),
             live("theirs", ("other", "thing.theirs")), live("stray")]
    matched, problems = match_live(lives, STACK, state(record("web")), [want("web"), want("db")])
    assert problems == []
    # web: by state; db: adopted by its owner metadata; old: ours, undeclared: an orphan the plan deletes
    assert {a: m.physical for a, m in matched.items()} == {"thing.web": "web", "thing.db": "db", "thing.old": "old"}
    plan, _ = make_plan(PlanRequest(STACK, "lineage", 3), [want("web"), want("db")], {"thing.web": record("web")},
                        matched, {"default": MemoryProvider()})
    assert {c.address: (c.action, c.reason) for c in plan.changes} == {
        "thing.db": (Action.NOOP, Reason.ADOPTED), "thing.old": (Action.DELETE, Reason.ORPHAN)}


def test_an_intent_claims_an_object_without_owner_metadata_but_not_another_stacks() -> None:
    intents = (Intent("thing.a", "thing", "a", Action.CREATE), Intent("thing.b", "thing", "b", Action.CREATE))
    lives = [live("a"), live("b", ("other", "thing.b"))]
    matched, problems = match_live(lives, STACK, state(intents=intents), [])
    assert list(matched) == ["thing.a"] and problems == []


def test_a_forgotten_object_is_neither_adopted_nor_orphaned() -> None:
    gone = record("kept")
    matched, problems = match_live([live("kept", (STACK, "thing.kept"))], STACK, state(forgotten=(gone,)), [])
    assert matched == {} and problems == []
    intent = Intent("thing.kept", "thing", "kept", Action.CREATE)  # not even through an intent
    assert match_live([live("kept")], STACK, state(intents=(intent,), forgotten=(gone,)), [])[0] == {}
    # declared again, it is a conflict that says how to manage it again
    _, [problem] = match_live([live("kept", (STACK, "thing.kept"))], STACK, state(forgotten=(gone,)), [want("kept")])
    assert "`crane state rm` removed it" in problem.summary and "crane import thing.kept" in problem.summary


def test_a_name_taken_by_another_stack_or_by_hand_is_a_conflict_that_says_whose() -> None:
    lives = [live("web", ("other", "thing.front")), live("db")]
    matched, problems = match_live(lives, STACK, state(), [want("web"), want("db")])
    assert matched == {}
    assert [(p.address, p.line) for p in problems] == [("thing.web", 7), ("thing.db", 7)]
    assert "belongs to thing.front of stack 'other'" in problems[0].summary
    assert "crane did not create it" in problems[1].summary and "crane import thing.db" in problems[1].summary
    # declared as an import, the unowned one is taken; the other stack's never is
    matched, problems = match_live(lives, STACK, state(), [want("web"), want("db")], imports=["thing.db", "thing.web"])
    assert list(matched) == ["thing.db"] and [p.address for p in problems] == ["thing.web"]


def test_the_other_half_of_an_interrupted_replacement_is_deposed() -> None:
    # state records web-2 at thing.web; web (also thing.web's by its metadata) is the old half a crash left
    rec = Recorded("thing.web", "thing", "web-2", {"size": 1})
    lives = [live("web-2", (STACK, "thing.web")), live("web", (STACK, "thing.web"))]
    matched, _ = match_live(lives, STACK, state(rec), [])
    assert {a: m.physical for a, m in matched.items()} == {"thing.web": "web-2", deposed("thing.web", "web"): "web"}


def endpoints(*unreadable: str) -> dict[str, Endpoint]:
    """The default endpoint: a provider of ``thing`` that cannot report the keys named ``unreadable``."""
    return {"default": Endpoint(MemoryProvider(unreadable=unreadable), [])}


def test_state_fills_in_what_the_endpoint_cannot_report_and_state_only_kinds_are_as_recorded() -> None:
    rec = record("disk", size=1, image="/srv/base.img")
    lease = Recorded("lease.ip", "lease", "ip", {"ip": "10.0.0.5"})
    matched, _ = match_live([live("disk", size=2)], STACK, state(rec, lease), [], endpoints=endpoints("image"))
    assert matched["thing.disk"].properties == {"size": 2, "image": "/srv/base.img"}
    assert matched["lease.ip"].properties == {"ip": "10.0.0.5"}  # not listed: never "deleted outside crane"
    refreshed = refreshed_records([live("disk", size=2)], STACK, state(rec, record("gone")),
                                  endpoints=endpoints("image"))
    assert {c.address: c.action for c in refreshed} == {"thing.disk": Outcome.REFRESH, "thing.gone": Outcome.FORGET}
    assert refreshed[0].record is not None and refreshed[0].record.properties["image"] == "/srv/base.img"


def test_a_key_the_read_lacks_that_the_provider_can_report_is_drift_not_taken_from_state() -> None:
    """Only the keys a provider names unreadable come from state: any other a recorded object has and the read
    lacks (a provider that stopped reporting it, an object changed outside crane) is missing, so the plan shows it
    as drift and changes the object back to the stack."""
    rec = record("disk", size=1, image="/srv/base.img", label="db")
    read = endpoints("image")
    matched, _ = match_live([live("disk", size=1)], STACK, state(rec), [], endpoints=read)
    assert matched["thing.disk"].properties == {"size": 1, "image": "/srv/base.img"}  # label: not filled in
    wanted = Desired("thing.disk", "thing", "disk", {"size": 1, "image": "/srv/base.img", "label": "db"})
    plan, _ = make_plan(PlanRequest(STACK, "lineage", 3), [wanted], {"thing.disk": rec}, matched, read)
    assert plan.drift == [Drift("thing.disk", [FieldChange("label", "db", None)])]
    [change] = plan.changes
    assert change.action is Action.UPDATE and [(f.name, f.before, f.after) for f in change.fields] == [
        ("label", None, "db")]
    # refresh records the object as read: the key is gone from state, not kept there silently
    [refreshed] = refreshed_records([live("disk", size=1)], STACK, state(rec), endpoints=read)
    assert refreshed.record is not None and refreshed.record.properties == {"size": 1, "image": "/srv/base.img"}


def test_a_recorded_object_its_provider_could_not_list_this_time_is_as_state_recorded() -> None:
    """A listed kind's object the provider says its read could not see (``PartialListing``: a volume of a stopped
    pool) is kept as recorded, not taken for deleted; the others of its kind still are."""

    class Shelves(MemoryProvider):
        def unlisted(self, kind: str, properties: dict[str, Any]) -> bool:
            return properties.get("shelf") == "locked"

    read = {"default": Endpoint(Shelves(), [])}
    hidden, gone = record("a", shelf="locked"), record("b", shelf="open")
    matched, _ = match_live([], STACK, state(hidden, gone), [], endpoints=read)
    assert list(matched) == ["thing.a"] and matched["thing.a"].properties == {"shelf": "locked"}
    assert [c.address for c in refreshed_records([], STACK, state(hidden, gone), endpoints=read)] == ["thing.b"]
