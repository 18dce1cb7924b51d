"""Plan a stack: load state, refresh from the provider, and hand both to the pure planner."""

from __future__ import annotations

from collections.abc import Sequence

from crane_iac.addresses import is_within
from crane_iac.engine.refresh import match_live
from crane_iac.errors import Diagnostic, DiagnosticsError
from crane_iac.loader import LoadedStack
from crane_iac.planner.diff import PlanRequest, make_plan
from crane_iac.planner.model import Action, Live, Plan
from crane_iac.providers.base import Provider
from crane_iac.state.base import StackState


def plan_stack(
    stack: str,
    loaded: LoadedStack,
    state: StackState,
    provider: Provider,
    *,
    refresh: bool = True,
    targets: Sequence[str] = (),
    replace: Sequence[str] = (),
    destroy: bool = False,
    lives: list[Live] | None = None,
) -> Plan:
    """The plan for ``stack``; raises ``DiagnosticsError`` for anything that makes it impossible.
    ``lives`` is the provider's ``read_all()`` when the caller fetched it already (in parallel with loading)."""
    diagnostics: list[Diagnostic] = []
    known = set(loaded.dependencies()) | set(state.resources) | set(loaded.components)
    for address in [*targets, *replace]:
        if not any(is_within(a, address) for a in known):
            diagnostics.append(Diagnostic(f"no resource {address!r} in the stack or its state", address=address))
    live = None
    if refresh:
        if lives is None:
            lives = provider.read_all()
        live, conflicts = match_live(lives, stack, state, [] if destroy else loaded.desired)
        diagnostics.extend(conflicts)
    request = PlanRequest(stack=stack, lineage=state.lineage, serial=state.serial, refreshed=refresh,
                          targets=tuple(targets), replace=tuple(replace), destroy=destroy)
    plan, problems = make_plan(request, loaded.desired, state.resources, live, provider,
                               outputs={} if destroy else loaded.outputs, recorded_outputs=state.outputs)
    diagnostics.extend(problems)
    desired = {d.address: d for d in loaded.desired}
    if refresh and not destroy:
        for change in plan.changes:
            if change.action in (Action.CREATE, Action.UPDATE) or change.action.is_replace:
                want = desired[change.address]
                for problem in provider.check(change.kind, change.after or want.properties):
                    diagnostics.append(Diagnostic(problem, want.file, want.line, change.address))
    for change in plan.changes:
        if change.action is Action.CREATE_THEN_DELETE:
            want = desired[change.address]
            diagnostics.append(Diagnostic(
                f"create_before_destroy cannot be honoured: the replacement would need the hypervisor name "
                f"{change.physical!r}, which the old {change.kind} still holds; drop create_before_destroy or "
                "rename the resource", want.file, want.line, change.address))
    if diagnostics:
        raise DiagnosticsError(diagnostics)
    return plan
