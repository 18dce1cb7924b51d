"""The dependency graph: topological order, what a target needs and what needs it, and cycles."""

from __future__ import annotations

from graphlib import CycleError

import pytest

from crane_iac.planner.graph import find_cycle, to_dot, topological, with_dependencies, with_dependents

#: vm.web uses the disk and the lan; the disk uses the pool; vm.db uses the lan; the component's two parts
DEPS = {"pool.p": [], "volume.disk": ["pool.p"], "network.lan": [], "vm.web": ["volume.disk", "network.lan"],
        "vm.db": ["network.lan"], "appdomain.shop/vm.a": ["vm.db"], "appdomain.shop/vm.b": []}


def test_topological_puts_every_dependency_first_and_ignores_unknown_ones() -> None:
    order = topological({**DEPS, "vm.x": ["vm.not-declared"]})
    assert sorted(order) == sorted([*DEPS, "vm.x"])
    for address, deps in DEPS.items():
        assert all(order.index(d) < order.index(address) for d in deps)


def test_with_dependencies_is_what_a_targeted_plan_takes() -> None:
    assert with_dependencies(["vm.web"], DEPS) == {"vm.web", "volume.disk", "pool.p", "network.lan"}
    # a component's address takes every part within it
    assert with_dependencies(["appdomain.shop"], DEPS) == {"appdomain.shop/vm.a", "appdomain.shop/vm.b", "vm.db",
                                                           "network.lan"}


def test_with_dependents_is_what_a_targeted_destroy_takes() -> None:
    assert with_dependents(["network.lan"], DEPS) == {"network.lan", "vm.web", "vm.db", "appdomain.shop/vm.a"}
    assert with_dependents(["pool.p"], DEPS) == {"pool.p", "volume.disk", "vm.web"}
    assert with_dependents(["vm.nothing"], DEPS) == set()


def test_a_cycle_is_found_and_named() -> None:
    assert find_cycle(DEPS) is None
    cyclic = {**DEPS, "pool.p": ["vm.web"]}
    cycle = find_cycle(cyclic)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"pool.p", "volume.disk", "vm.web"}
    with pytest.raises(CycleError):
        topological(cyclic)


def test_dot_lists_every_edge() -> None:
    dot = to_dot({"vm.web": ["network.lan"], "network.lan": []})
    assert dot.splitlines() == ["digraph crane {", "  rankdir=LR;", '  "network.lan";', '  "vm.web";',
                                '  "vm.web" -> "network.lan";', "}"]
