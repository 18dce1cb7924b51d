"""The dependency graph over a stack's resources: topological order, targets and DOT output."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from crane_iac.addresses import is_within


def topological(dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """Addresses with every dependency before its dependents; raises ``graphlib.CycleError``."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for address, deps in dependencies.items():
        sorter.add(address, *(d for d in deps if d in dependencies))
    return list(sorter.static_order())


def find_cycle(dependencies: Mapping[str, Iterable[str]]) -> list[str] | None:
    try:
        topological(dependencies)
    except CycleError as exc:
        return list(exc.args[1])
    return None


def with_dependencies(targets: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> set[str]:
    """Every address within a target, plus everything those depend on, transitively."""
    wanted = list(targets)
    selected = {a for a in dependencies if any(is_within(a, t) for t in wanted)}
    stack = list(selected)
    while stack:
        for dep in dependencies.get(stack.pop(), ()):
            if dep not in selected:
                selected.add(dep)
                stack.append(dep)
    return selected


def with_dependents(targets: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> set[str]:
    """Every address within a target, plus everything that depends on those, transitively: what destroying the
    targets must destroy too (a VM goes before the network it is attached to, never the other way round)."""
    wanted = list(targets)
    dependents: dict[str, list[str]] = {}
    for address, deps in dependencies.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(address)
    selected = {a for a in dependencies if any(is_within(a, t) for t in wanted)}
    stack = list(selected)
    while stack:
        for user in dependents.get(stack.pop(), ()):
            if user not in selected:
                selected.add(user)
                stack.append(user)
    return selected


def to_dot(dependencies: Mapping[str, Iterable[str]]) -> str:
    lines = ["digraph crane {", "  rankdir=LR;"]
    for address in sorted(dependencies):
        lines.append(f'  "{address}";')
        for dep in sorted(dependencies[address]):
            lines.append(f'  "{address}" -> "{dep}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
