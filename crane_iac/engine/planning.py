"""Plan a stack: load state, refresh from the provider, and hand both to the pure planner."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Sequence
from typing import Any

from crane_iac.addresses import is_within
from crane_iac.engine.endpoints import Endpoints
from crane_iac.engine.refresh import match_live
from crane_iac.engine.retired import with_retired
from crane_iac.errors import Diagnostic, DiagnosticsError, ProviderError, StalePlanError
from crane_iac.ipam.pools import LeaseRecord
from crane_iac.loader import LoadedStack, names_after_moves
from crane_iac.objects import Action, Live, kind_of
from crane_iac.planner.diff import ENDPOINT_TYPE, PlanRequest, make_plan
from crane_iac.planner.leases import lease_releases
from crane_iac.planner.model import Plan, TierShown
from crane_iac.scaling import ScalableTier
from crane_iac.state.base import Setting, StackState


def _suggest(address: str, known: set[str]) -> str:
    """"; did you mean vm.cache?" for ``cache`` (a bare name) or a near miss such as ``vm.cahce``."""
    by_name = sorted(a for a in known if a.rsplit("/", 1)[-1].split(".", 1)[-1] == address)
    close = by_name or difflib.get_close_matches(address, sorted(known), n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(close)}?" if close else "; see `crane state list` or `crane graph`"


def _apply_moves(state: StackState, declared: Sequence[tuple[str, str]],
                 diagnostics: list[Diagnostic]) -> tuple[StackState, list[tuple[str, str]]]:
    """The state as it will be once apply re-addresses the records ``moved(...)`` names; a move whose old address
    is not recorded is done already (or never applied) and is ignored, as Terraform does."""
    moves = [(old, new) for old, new in declared if old in state.resources]
    if not moves:
        return state, []
    resources = dict(state.resources)
    for old, new in moves:
        if new in resources:
            diagnostics.append(Diagnostic(f"moved(from_={old!r}): both {old} and {new} are recorded; "
                                          f"`crane state rm` the wrong one first", address=new))
            continue
        resources[new] = dataclasses.replace(resources.pop(old), address=new)
    return dataclasses.replace(state, resources=resources), moves


def _check_endpoints(loaded: LoadedStack, state: StackState, endpoints: Endpoints) -> list[Diagnostic]:
    """Every resource's endpoint is declared, and its provider type serves the resource's kind."""
    problems = []
    for want in loaded.desired:
        provider = endpoints.get(want.endpoint)
        if provider is None:
            problems.append(Diagnostic(
                f"provider={want.endpoint!r} is not an endpoint of this stack; declared: {', '.join(endpoints)} "
                f"(add [stacks.{state.name}.providers.{want.endpoint}] to crane.toml)",
                want.file, want.line, want.address))
            continue
        rule = kind_of(want.kind)
        server = provider.provider_of(want.kind)
        served_as = endpoints.types[want.endpoint] if server is provider.hypervisor else server.provider_type
        if want.kind not in provider.kinds or (rule.provider and rule.provider != served_as):
            problems.append(Diagnostic(
                f"endpoint {want.endpoint!r} ({endpoints.types[want.endpoint]}) does not serve {want.kind} resources",
                want.file, want.line, want.address))
    for address, rec in state.resources.items():
        if rec.endpoint not in endpoints:
            problems.append(Diagnostic(
                f"is recorded on endpoint {rec.endpoint!r}, which crane.toml no longer declares; declare it again "
                "to change or destroy what is there, or `crane state rm` the record", address=address))
    return problems


def check_saved_plan(plan: Plan, state: StackState, source: str) -> None:
    """Refuse a saved plan made against other state, quoting serials ``crane state history`` shows."""
    if plan.stack != state.name:
        raise StalePlanError(f"{source} was made for stack {plan.stack!r}, not {state.name!r}; make a new plan")
    if plan.lineage and plan.lineage != state.lineage:
        raise StalePlanError(f"{source} is stale: the state of stack {state.name!r} was recreated since it was made "
                             f"(lineage {plan.lineage} → {state.lineage or 'none'}); run `crane plan` again")
    if plan.serial != state.serial:
        since = f"serial {state.serial}" if state.serial == plan.serial + 1 else \
            f"serials {plan.serial + 1}–{state.serial}"
        raise StalePlanError(f"{source} is stale: it was made against serial {plan.serial} of stack {state.name!r}, "
                             f"and the state is at serial {state.serial} now (`crane state history` shows {since}); "
                             "run `crane plan` again")


def plan_stack(
    stack: str,
    loaded: LoadedStack,
    state: StackState,
    endpoints: Endpoints,
    *,
    refresh: bool = True,
    targets: Sequence[str] = (),
    replace: Sequence[str] = (),
    destroy: bool = False,
    lives: list[Live] | None = None,
    reload: Callable[[dict[str, str]], LoadedStack] | None = None,
    leases: Sequence[LeaseRecord] = (),
) -> Plan:
    """The plan for ``stack``; raises ``DiagnosticsError`` for anything that makes it impossible.
    ``lives`` is the endpoints' ``read_all()`` when the caller fetched it already (in parallel with loading).
    ``reload`` runs the stack again with some hypervisor names pinned: a ``create_before_destroy`` replacement
    takes the name its provider gives it, and what is derived from the name (a guest's MACs) follows. ``leases``
    are what address pools lease to the stack, as state holds them: the plan lists those its apply gives back."""
    if refresh and lives is None:
        lives = endpoints.read_all()
    # records made on an endpoint's former type: planned on that endpoint, opened again (engine/retired.py)
    state, lives = with_retired(state, endpoints, lives if refresh else None)
    renames: dict[str, str] = {}
    for _ in range(_MAX_RENAMES):
        plan, names = _plan_once(stack, loaded, state, endpoints, refresh=refresh, targets=targets, replace=replace,
                                 destroy=destroy, lives=lives, renaming=reload is not None, leases=leases)
        if not names:
            return plan
        assert reload is not None
        pinned = names_after_moves(loaded, {a: r.physical for a, r in state.resources.items()})
        renames.update(names)
        loaded = reload({**pinned, **renames})
    raise DiagnosticsError([Diagnostic(f"create_before_destroy: replacements still need new names after "
                                       f"{_MAX_RENAMES} rounds; drop create_before_destroy")])


#: rounds of renaming (a replacement's new name may force its dependents' replacements, which need names too)
_MAX_RENAMES = 5


def _plan_once(
    stack: str, loaded: LoadedStack, state: StackState, endpoints: Endpoints, *, refresh: bool,
    targets: Sequence[str], replace: Sequence[str], destroy: bool, lives: list[Live] | None, renaming: bool,
    leases: Sequence[LeaseRecord],
) -> tuple[Plan, dict[str, str]]:
    """One round: the plan, or the replacement names the stack must be run again with (address → name)."""
    diagnostics: list[Diagnostic] = []
    state, moves = _apply_moves(state, loaded.moves, diagnostics)
    known = set(loaded.dependencies()) | set(state.resources) | set(loaded.components)
    for address in [*targets, *replace]:
        if not any(is_within(a, address) for a in known):
            hint = _suggest(address, known)
            diagnostics.append(Diagnostic(f"no resource {address!r} in the stack or its state{hint}", address=address))
    diagnostics.extend(_check_endpoints(loaded, state, endpoints))
    if diagnostics:
        raise DiagnosticsError(diagnostics)
    live = None
    if refresh:
        assert lives is not None
        live, conflicts = match_live(lives, stack, state, [] if destroy else loaded.desired, loaded.imports,
                                     endpoints, endpoints.sharing)
        diagnostics.extend(conflicts)
    request = PlanRequest(stack=stack, lineage=state.lineage, serial=state.serial, refreshed=refresh,
                          targets=tuple(targets), replace=tuple(replace), destroy=destroy,
                          imports=tuple(loaded.imports))
    plan, problems = make_plan(request, loaded.desired, state.resources, live, endpoints,
                               outputs={} if destroy else loaded.outputs, recorded_outputs=state.outputs,
                               types=endpoints.types)
    diagnostics.extend(problems)
    plan.moves = [[old, new] for old, new in moves]
    if leases:
        plan.leases_released = lease_releases(
            leases, declared={d.address for d in loaded.desired}, recorded=state.resources,
            wanted={(w.pool, w.address, w.slot) for w in loaded.lease_wants}, moves=moves, targets=targets,
            destroy=destroy)
    plan.settings = [{"key": key, "value": state.settings[key].value, "by": state.settings[key].by,
                      "why": state.settings[key].why, "at": state.settings[key].at}
                     for key in loaded.settings_read if key in state.settings]
    plan.tiers = [_tier(tier, state.settings.get(tier.setting)) for tier in loaded.tiers]
    if not destroy:
        plan.overrides = _overrides(loaded, state)
    plan.settings_dropped = _settings_dropped(plan, state, set(loaded.components))
    desired = {d.address: d for d in loaded.desired}
    for change in plan.changes:
        if change.action is not Action.DELETE and change.after is not None:
            change.note = endpoints[change.endpoint].remark(change.kind, change.after) or ""
        moved = next((f for f in change.fields if f.name == ENDPOINT_TYPE and f.forces_replacement), None)
        if moved is not None:
            said = (f"the endpoint's type changed from {moved.before} to {moved.after}: made anew on {moved.after}, "
                    f"the old one deleted from {moved.before}")
            change.note = f"{said}; {change.note}" if change.note else said
    if refresh and not destroy:
        for change in plan.changes:
            if change.action in (Action.CREATE, Action.UPDATE) or change.action.is_replace:
                want = desired[change.address]
                for problem in endpoints[change.endpoint].check(change.kind, change.after or want.properties):
                    diagnostics.append(Diagnostic(problem, want.file, want.line, change.address))
                # what an endpoint sharing the kind will check against it (a volume there in this pool)
                for peer in sorted(endpoints.sharing.peers(change.endpoint, change.kind) - {change.endpoint}):
                    endpoints[peer].planned_elsewhere(change.kind, change.after or want.properties)
    if refresh and not destroy:
        plan.warnings = [{"address": want.address, "message": message} for want in loaded.desired
                         for message in endpoints[want.endpoint].warnings(want.kind, want.properties)]
    names: dict[str, str] = {}
    for change in plan.changes:
        if change.action is Action.CREATE_THEN_DELETE and change.from_physical is None:
            want = desired[change.address]
            try:
                names[change.address] = endpoints[change.endpoint].replacement_name(
                    change.kind, change.physical, change.after or want.properties)
            except ProviderError as exc:
                diagnostics.append(Diagnostic(f"create_before_destroy cannot be honoured: {exc}", want.file,
                                              want.line, change.address))
    if names and not renaming:
        diagnostics.append(Diagnostic("create_before_destroy needs the stack run again with new names; "
                                      "plan through the workspace", address=next(iter(names))))
    if diagnostics:
        raise DiagnosticsError(diagnostics)
    return plan, names


def _tier(tier: ScalableTier, setting: Setting | None) -> TierShown:
    """A scalable tier as the plan shows it: the size in effect, the stack's, the range, who owns the size, and
    whether the setting holds, was clamped into the range or was ignored (the component decides the size in effect;
    this says which of the three it did)."""
    if setting is None:
        return TierShown(tier.address, tier.name, tier.size, tier.declared, tier.min, tier.max)
    value = setting.value
    if not isinstance(value, int) or isinstance(value, bool):
        effect = "ignored"
    else:
        effect = "held" if value == tier.size else "clamped"
    return TierShown(tier.address, tier.name, tier.size, tier.declared, tier.min, tier.max, setting.by, setting.why,
                     effect, json.dumps(value))


def _overrides(loaded: LoadedStack, state: StackState) -> list[dict[str, Any]]:
    """The settings in effect that differ from the stack's own value for them (``setting(key, default)``'s
    default): the stack, or a ``--var`` the user gave, says one thing and the setting wins."""
    found = []
    for key in loaded.settings_read:
        stack_value, held = loaded.setting_defaults.get(key), state.settings.get(key)
        if held is not None and stack_value is not None and held.value != stack_value:
            found.append({"key": key, "value": held.value, "stack_value": stack_value, "by": held.by,
                          "why": held.why, "at": held.at})
    return found


def _settings_dropped(plan: Plan, state: StackState, declared: set[str]) -> list[dict[str, Any]]:
    """Settings of components (``appdomain.shop/web.size`` belongs to ``appdomain.shop``) whose last recorded
    resources this plan deletes, and which the stack no longer declares (or the plan destroys): they go with the
    component, so a fresh apply after a destroy starts from the stack's values."""
    deleted = {c.address for c in plan.changes if c.action is Action.DELETE}
    if not deleted or not state.settings:
        return []
    staying = [a for a in state.resources if a not in deleted]
    dropped = []
    for key, held in sorted(state.settings.items()):
        owner = key.rsplit("/", 1)[0] if "/" in key else ""
        if not owner or (owner in declared and not plan.destroy):
            continue
        if any(is_within(a, owner) for a in deleted) and not any(is_within(a, owner) for a in staying):
            dropped.append({"key": key, "value": held.value, "by": held.by, "component": owner})
    return dropped
