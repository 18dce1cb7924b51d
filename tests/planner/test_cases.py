"""Data-driven plan cases: desired + recorded + live → expected actions (pyinfra style), on the pure planner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crane_iac.objects import Action, Desired, FieldChange, Live, Recorded
from crane_iac.planner import Phase, Plan, ResourceChange, make_plan, order_changes
from crane_iac.planner.diff import PlanRequest, Step
from crane_iac.planner.graph import find_cycle
from crane_iac.providers.libvirt.provider import diff_properties


class LibvirtRules:
    """The libvirt provider's replacement rules, without a connection."""

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return diff_properties(kind, before, after)


CASES = [case for path in sorted((Path(__file__).parent / "cases").glob("*.json"))
         for case in json.loads(path.read_text())]


def run_case(case: dict[str, Any]) -> tuple[Plan, list[Any]]:
    desired = [Desired(**{"dependencies": [], **d}) for d in case["desired"]]
    recorded = {a: Recorded(address=a, **r) for a, r in case["recorded"].items()}
    live = None if case["live"] is None else {a: Live(**v) for a, v in case["live"].items()}
    request = PlanRequest(stack="s", lineage="l", serial=3, **{k: tuple(v) if isinstance(v, list) else v
                                                              for k, v in case.get("request", {}).items()})
    return make_plan(request, desired, recorded, live, {"default": LibvirtRules()})


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plan_case(case: dict[str, Any]) -> None:
    plan, diagnostics = run_case(case)
    assert diagnostics == []
    assert {c.address: c.action.value for c in plan.changes} == case["expect"]
    assert plan.unchanged == case.get("unchanged", 0)
    drift = {d.address: "gone" if d.gone else [f.name for f in d.fields] for d in plan.drift}
    assert drift == case.get("drift", {})
    assert Plan.from_json(plan.to_json()) == plan


def test_protected_resource_refuses_replace_and_delete() -> None:
    desired = [Desired("vm.a", "vm", "a", {"disks": ["default/x"]}, protect=True, file="s.py", line=4)]
    recorded = {"vm.a": Recorded("vm.a", "vm", "a", {"disks": []}, protect=True),
                "vm.b": Recorded("vm.b", "vm", "b", {"vcpus": 2}, protect=True)}
    _, diagnostics = make_plan(PlanRequest("s", "l", 1), desired, recorded, None, {"default": LibvirtRules()})
    assert [(d.address, d.line) for d in diagnostics] == [("vm.a", 4), ("vm.b", None)]
    assert "cannot be replaced" in diagnostics[0].summary and "will not delete it" in diagnostics[1].summary


def test_apply_graph_orders_creates_after_and_deletes_before_dependencies() -> None:
    changes = [
        ResourceChange("network.n", "network", "n", Action.DELETE_THEN_CREATE),
        ResourceChange("vm.a", "vm", "a", Action.DELETE_THEN_CREATE, dependencies=["network.n"]),
        ResourceChange("vm.old", "vm", "old", Action.DELETE, dependencies=["network.n"]),
    ]
    graph = order_changes(changes)
    assert graph[Step("vm.a", Phase.APPLY)] == {Step("vm.a", Phase.DELETE), Step("network.n", Phase.APPLY)}
    assert graph[Step("network.n", Phase.DELETE)] == {Step("vm.a", Phase.DELETE), Step("vm.old", Phase.DELETE)}
    assert graph[Step("network.n", Phase.APPLY)] == {Step("network.n", Phase.DELETE)}


def test_a_dependency_replaced_delete_first_does_not_wait_for_its_updated_dependent() -> None:
    """vm.a is updated in place while its disk is deleted and made again: the disk's delete cannot wait for the
    update (which waits for the new disk), or the graph has a cycle and apply starts nothing."""
    for disk_action, waits in ((Action.DELETE_THEN_CREATE, set()),
                               (Action.CREATE_THEN_DELETE, {Step("vm.a", Phase.APPLY), Step("volume.d", Phase.APPLY)})):
        graph = order_changes([ResourceChange("volume.d", "volume", "d", disk_action),
                               ResourceChange("vm.a", "vm", "a", Action.UPDATE, dependencies=["volume.d"])])
        assert graph[Step("volume.d", Phase.DELETE)] == waits
        assert graph[Step("vm.a", Phase.APPLY)] == {Step("volume.d", Phase.APPLY)}
        assert find_cycle({f"{s.address}:{s.phase}": [f"{p.address}:{p.phase}" for p in prereqs]
                           for s, prereqs in graph.items()}) is None


def test_a_server_the_balancer_lets_go_is_deleted_only_after_the_balancer_changed() -> None:
    """Scale-in: the balancer's configuration drops web-3 first, then web-3 goes (no request sent to a dead one)."""
    desired = [Desired("vm.web-1", "vm", "web-1", {"vcpus": 1}),
               Desired("vm.lb", "vm", "lb", {"vcpus": 2}, dependencies=["vm.web-1"])]
    recorded = {"vm.web-1": Recorded("vm.web-1", "vm", "web-1", {"vcpus": 1}),
                "vm.web-3": Recorded("vm.web-3", "vm", "web-3", {"vcpus": 1}),
                "vm.lb": Recorded("vm.lb", "vm", "lb", {"vcpus": 1}, dependencies=["vm.web-1", "vm.web-3"])}
    plan, diagnostics = make_plan(PlanRequest("s", "l", 1), desired, recorded, None, {"default": LibvirtRules()})
    assert diagnostics == []
    lb = next(c for c in plan.changes if c.address == "vm.lb")
    assert lb.action is Action.UPDATE and lb.released == ["vm.web-3"]
    graph = order_changes(plan.changes)
    assert graph[Step("vm.web-3", Phase.DELETE)] == {Step("vm.lb", Phase.APPLY)}
    assert Plan.from_json(plan.to_json()) == plan


def test_an_endpoint_of_another_type_now_replaces_and_a_move_cut_short_is_recorded() -> None:
    """A record on an endpoint's former type (planned on ``default@libvirt``): a replacement, said by its endpoint's
    type; the new object already on the endpoint (a move a crash cut short): recorded there, nothing made twice; an
    object the hypervisor has under another name than state's (an interrupted replacement's new half): deleted by
    the name it has."""
    props = {"vcpus": 1}
    desired = [Desired(f"vm.{n}", "vm", n, props) for n in ("a", "b", "c")]
    recorded = {"vm.a": Recorded("vm.a", "vm", "a", props, endpoint="default@libvirt"),
                "vm.b": Recorded("vm.b", "vm", "b", props, endpoint="default@libvirt"),
                "vm.c": Recorded("vm.c", "vm", "c", props)}
    live = {"vm.a": Live("vm", "a", props, endpoint="default@libvirt"),
            "vm.b": Live("vm", "b", props, owner_stack="s", owner_address="vm.b"),
            "vm.c": Live("vm", "c-r2", props, owner_stack="s", owner_address="vm.c")}
    rules = LibvirtRules()
    plan, diagnostics = make_plan(PlanRequest("s", "l", 1), desired, recorded, live,
                                  {"default": rules, "default@libvirt": rules}, types={"default": "xenapi"})
    assert diagnostics == []
    changes = {c.address: c for c in plan.changes}
    a, b, c = changes["vm.a"], changes["vm.b"], changes["vm.c"]
    assert a.action is Action.DELETE_THEN_CREATE and a.from_endpoint == "default@libvirt"
    assert [(f.name, f.before, f.after, f.forces_replacement) for f in a.fields] == [
        ("endpoint type", "libvirt", "xenapi", True)]
    assert b.action is Action.UPDATE and b.from_endpoint is None
    assert [(f.name, f.reach.value) for f in b.fields] == [("endpoint type", "state")]
    assert c.action is Action.DELETE_THEN_CREATE and c.from_physical == "c-r2"
