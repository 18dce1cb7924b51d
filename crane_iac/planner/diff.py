"""Diff desired (stack) against recorded (state) and live (refresh), giving a Plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from crane_iac.addresses import is_within
from crane_iac.errors import Diagnostic
from crane_iac.objects import Action, Desired, FieldChange, Live, Reach, Reason, Recorded, retired_from
from crane_iac.planner.graph import topological, with_dependencies, with_dependents
from crane_iac.planner.model import Differ, Drift, KeepsOutputs, Phase, Plan, ResourceChange

KNOWN_AFTER_APPLY = "(known after apply)"
#: the field a plan shows for a resource whose endpoint crane.toml gave another provider type
ENDPOINT_TYPE = "endpoint type"


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for: which stack, against which state serial, with which options."""

    stack: str
    lineage: str
    serial: int
    refreshed: bool = True
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    destroy: bool = False
    #: addresses the stack declares with ``import_``: an unrecorded live object there is imported, not adopted
    imports: tuple[str, ...] = ()


def resolve_outputs(value: Any, outputs: Mapping[str, Mapping[str, Any]],
                    pending: Mapping[str, AbstractSet[str]] | None = None, *, keep_unknown: bool = True) -> Any:
    """Substitute output markers whose values are known (not those of resources ``pending`` change, by address: the
    outputs their change keeps). An unknown one stays a marker (at plan time: known after apply) or, with
    ``keep_unknown=False`` (at apply), is None."""
    if isinstance(value, dict):
        if "$output" in value:
            kept = pending.get(value["$output"]) if pending else None
            known = None if kept is not None and value["attribute"] not in kept else outputs.get(value["$output"])
            if known is not None and value["attribute"] in known:
                return known[value["attribute"]]
            return value if keep_unknown else None
        return {k: resolve_outputs(v, outputs, pending, keep_unknown=keep_unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_outputs(v, outputs, pending, keep_unknown=keep_unknown) for v in value]
    return value


def has_markers(properties: dict[str, Any]) -> bool:
    """True when some value is an output marker; a C-speed scan, as most resources use no outputs."""
    return "'$output'" in repr(properties)


def _drift(recorded: Recorded, live: Live) -> list[FieldChange]:
    """The recorded keys whose live value differs, a key the read lacks included (as null). A key only the read has
    is one the record predates (an older crane did not read it): not a change made outside crane."""
    if recorded.properties == live.properties:  # the usual case, compared in C
        return []
    return [
        FieldChange(key, value, live.properties.get(key))
        for key, value in sorted(recorded.properties.items())
        if value != live.properties.get(key)
    ]


def make_plan(
    request: PlanRequest,
    desired: Iterable[Desired],
    recorded: Mapping[str, Recorded],
    live: Mapping[str, Live] | None,
    differs: Mapping[str, Differ],
    outputs: Mapping[str, Any] | None = None,
    recorded_outputs: Mapping[str, Any] | None = None,
    types: Mapping[str, str] | None = None,
) -> tuple[Plan, list[Diagnostic]]:
    """Compute the plan. ``live`` is None when refresh is off; it may hold adopted and orphaned objects. ``differs``
    are the providers' judgements of changes, by endpoint; ``types`` the endpoints' provider types (a record on an
    endpoint's former type, ``objects.retired_endpoint``, is replaced on its type now, said so)."""
    # the stack's lifecycle options count even for a destroy: protect=True there refuses it
    declared = {d.address: d for d in desired}
    desired_by_address = {} if request.destroy else declared
    diagnostics: list[Diagnostic] = []
    plan = Plan(
        stack=request.stack,
        lineage=request.lineage,
        serial=request.serial,
        refreshed=live is not None,
        targets=list(request.targets),
        destroy=request.destroy,
    )
    deps = {a: d.dependencies for a, d in desired_by_address.items()}
    for address, known in recorded.items():
        deps.setdefault(address, known.dependencies)
    selected: set[str] | None = None
    if request.targets:
        # Terraform's rule: a targeted plan takes what the targets need; a targeted destroy takes what needs them
        selected = (with_dependents if request.destroy else with_dependencies)(request.targets, deps)
        if live is not None:
            selected |= {a for a in live if any(is_within(a, t) for t in request.targets)}

    known_outputs: dict[str, dict[str, Any]] = {}
    #: addresses whose outputs change in this apply, each with the outputs its change keeps (none: all change)
    pending: dict[str, frozenset[str]] = {}
    for address in topological({a: d.dependencies for a, d in desired_by_address.items()}):
        want = desired_by_address[address]
        rec = recorded.get(address)
        now = live.get(address) if live is not None else None
        baseline: dict[str, Any] | None
        reason: Reason | None = None
        drifted: list[FieldChange] = []
        # a change that only records what was read (the object as the stack has it, its record not)
        recording = False
        if live is None:
            baseline = rec.properties if rec else None
        elif now is None:
            baseline = None
            if rec is not None:
                plan.drift.append(Drift(address=address, gone=True))
                reason = Reason.GONE
        else:
            baseline = now.properties
            if rec is None:
                reason = Reason.IMPORTED if address in request.imports else Reason.ADOPTED
            else:
                drifted = _drift(rec, now)
                if drifted:
                    plan.drift.append(Drift(address=address, fields=drifted))
        if baseline is not None:
            known_outputs[address] = now.outputs if now is not None else rec.outputs if rec else {}
        after = want.properties
        if has_markers(after):
            after = resolve_outputs(after, known_outputs, pending)
        if baseline is None:
            change = ResourceChange(address, want.kind, want.physical, Action.CREATE, after=after,
                                    dependencies=want.dependencies, protect=want.protect, reason=reason,
                                    endpoint=want.endpoint)
            pending[address] = frozenset()
        else:
            fields = [f for f in differs[want.endpoint].diff(want.kind, baseline, after)
                      if f.name not in want.ignore_changes]
            if want.ignore_changes:
                after = {**after, **{k: baseline.get(k) for k in want.ignore_changes if k in baseline}}
            # the endpoint the object is on: where the hypervisor has it (an interrupted move's new half), else state's
            old_endpoint = now.endpoint if now is not None else rec.endpoint if rec is not None else want.endpoint
            if rec is not None and rec.endpoint != want.endpoint:
                # a new endpoint: a new object there; one there already (a move a crash cut short) is recorded there
                former = retired_from(rec.endpoint)
                moved = (ENDPOINT_TYPE, former[1], (types or {}).get(want.endpoint)) \
                    if former is not None and former[0] == want.endpoint else ("provider", rec.endpoint, want.endpoint)
                fields.insert(0, FieldChange(*moved, Reach.REPLACE) if old_endpoint != want.endpoint
                              else FieldChange(*moved, Reach.STATE, note=STATE_ONLY))
            # the old object's name: the one the hypervisor has at the address (an interrupted replacement's new half
            # matched by its owner, a half-made object adopted), else state's
            old_physical = now.physical if now is not None else rec.physical if rec is not None else want.physical
            if old_physical != want.physical:  # a replacement under its own name
                fields.insert(0, FieldChange("name", old_physical, want.physical, Reach.REPLACE))
            if rec is not None and rec.protect != want.protect:  # the stack's protect is the one in force
                fields.append(FieldChange("protect", rec.protect, want.protect, Reach.STATE, note=STATE_ONLY))
            forced = address in request.replace
            if forced or any(f.forces_replacement for f in fields):
                action = Action.CREATE_THEN_DELETE if want.create_before_destroy else Action.DELETE_THEN_CREATE
                if want.protect and (selected is None or address in selected):
                    diagnostics.append(Diagnostic(
                        "is protected (protect=True) and cannot be replaced; "
                        f"changed: {', '.join(f.name for f in fields if f.forces_replacement) or '--replace'}; "
                        "remove protect=True from its declaration to allow it", want.file, want.line, address))
                pending[address] = frozenset()
                reason = reason or (Reason.FORCED if forced else None)
            elif fields:
                action = Action.UPDATE
                if any(f.changes_outputs for f in fields):
                    differ = differs[want.endpoint]
                    pending[address] = differ.kept_outputs(want.kind) if isinstance(differ, KeepsOutputs) \
                        else frozenset()
            elif rec is not None and not drifted:  # unchanged and recorded: nothing to do, nothing to record
                if selected is None or address in selected:
                    plan.unchanged += 1
                continue
            elif rec is not None:
                # the hypervisor has what the stack declares, but state records otherwise (an apply killed between
                # its provider call and its commit, a change outside crane that matches the stack): nothing to do
                # there, and the record takes what was read, else the drift would show at every plan and a value
                # the object took from a pool would stay leased as planned, never bound
                assert now is not None
                action, recording = Action.UPDATE, True
                fields = [FieldChange(f.name, f.before, f.after, Reach.STATE, note=STATE_ONLY) for f in drifted]
                after = {**{k: v for k, v in after.items() if k not in {f.name for f in drifted}},
                         **{f.name: now.properties[f.name] for f in drifted if f.name in now.properties}}
            else:
                action = Action.NOOP
            change = ResourceChange(address, want.kind, want.physical, action, fields, baseline, after,
                                    want.dependencies, want.protect, reason, want.endpoint,
                                    old_endpoint if old_endpoint != want.endpoint else None,
                                    old_physical if old_physical != want.physical else None)
            if rec is not None and rec.dependencies != want.dependencies:
                change.released = [d for d in rec.dependencies if d not in want.dependencies]
            if (action is Action.NOOP or recording) and now is not None:  # adopted, imported, or recorded as read
                change.outputs = dict(now.outputs)
        if selected is not None and address not in selected:
            if change.action is not Action.NOOP or change.reason:
                plan.untargeted.append(address)
            continue
        if change.action is Action.NOOP:  # adopted without differences: still needs recording
            plan.unchanged += 1
        plan.changes.append(change)

    gone = [a for a in recorded if a not in desired_by_address]
    orphans = [a for a in (live or {}) if a not in desired_by_address and a not in recorded]
    for address in gone + orphans:
        if selected is not None and address not in selected:
            plan.untargeted.append(address)
            continue
        old = recorded.get(address)
        seen = live.get(address) if live is not None else None
        if old is not None and live is not None and seen is None:
            plan.changes.append(ResourceChange(address, old.kind, old.physical, Action.DELETE, before=old.properties,
                                               dependencies=old.dependencies, reason=Reason.FORGET,
                                               endpoint=old.endpoint))
            continue
        if old is not None:
            problem = _protected(address, old, declared.get(address))
            if problem is not None:
                diagnostics.append(problem)
        source: Recorded | Live | None = old if old is not None else seen
        assert source is not None
        plan.changes.append(ResourceChange(  # named as the hypervisor has it (state's name may be an older half's)
            address, source.kind, seen.physical if seen is not None else source.physical, Action.DELETE,
            before=seen.properties if seen is not None else source.properties,
            dependencies=old.dependencies if old else [],
            reason=None if old else Reason.ORPHAN, endpoint=source.endpoint))

    if outputs is not None:
        # a targeted plan leaves the rest as it is: only the targets' outputs are known after apply
        changing = pending if selected is None else {a: kept for a, kept in pending.items() if a in selected}
        plan.outputs = {k: resolve_outputs(v, known_outputs, changing) for k, v in outputs.items()}
        before = dict(recorded_outputs or {})
        plan.output_changes = [FieldChange(k, before.get(k), plan.outputs.get(k))
                               for k in sorted(set(before) | set(plan.outputs))
                               if k not in before or k not in plan.outputs or before[k] != plan.outputs[k]]
        plan.outputs_changed = bool(plan.output_changes)
    elif recorded_outputs is not None:
        plan.outputs = dict(recorded_outputs)
    return plan, diagnostics


#: what the plan says of a change only crane's state records (``protect``)
STATE_ONLY = "recorded in state only; nothing on the hypervisor changes"


def _protected(address: str, recorded: Recorded, declared: Desired | None) -> Diagnostic | None:
    """Why deleting a recorded resource is refused, or None. The stack's ``protect`` is the one in force (removing it
    there lifts the protection, with no apply first); a resource the stack no longer declares keeps the protection
    state recorded for it, so deleting its declaration does not delete a protected object."""
    if declared is not None:
        if not declared.protect:
            return None
        return Diagnostic("is protected (protect=True) and cannot be destroyed; remove protect=True from its "
                          "declaration to allow it", declared.file, declared.line, address)
    if not recorded.protect:
        return None
    return Diagnostic(
        "was protected (protect=True) when last applied, and the stack no longer declares it, so crane will not "
        "delete it: to delete it, declare it again without protect=True and apply, then remove it; to leave the "
        f"object as it is and stop managing it, `crane state rm {address}`", address=address)


@dataclass(frozen=True, slots=True)
class Step:
    """One provider operation in the apply graph: the delete or the create/update half of a change."""

    address: str
    phase: Phase


def order_changes(changes: Iterable[ResourceChange]) -> dict[Step, set[Step]]:
    """The apply graph: each step with the steps that must finish before it."""
    by_address = {c.address: c for c in changes if c.action is not Action.NOOP or c.reason}
    graph: dict[Step, set[Step]] = {}
    # each address's steps, made once: 10,000 changes would otherwise make and hash ~60,000 Steps
    applies: dict[str, Step] = {}
    deletes: dict[str, Step] = {}
    for c in by_address.values():
        if c.action in (Action.DELETE, Action.DELETE_THEN_CREATE, Action.CREATE_THEN_DELETE):
            deletes[c.address] = step = Step(c.address, Phase.DELETE)
            graph[step] = set()
        if c.action is not Action.DELETE:
            applies[c.address] = step = Step(c.address, Phase.APPLY)
            graph[step] = set()
    for c in by_address.values():
        apply_step, delete_step = applies.get(c.address), deletes.get(c.address)
        if apply_step is not None and delete_step is not None:  # a replacement: one half waits for the other
            if c.action is Action.DELETE_THEN_CREATE:
                graph[apply_step].add(delete_step)
            else:
                graph[delete_step].add(apply_step)
        for dep in c.dependencies:
            if dep not in by_address:
                continue
            dep_apply, dep_delete = applies.get(dep), deletes.get(dep)
            if apply_step is not None and dep_apply is not None:
                graph[apply_step].add(dep_apply)
            # a dependency is deleted only after its dependents are gone
            if dep_delete is not None and delete_step is not None:
                graph[dep_delete].add(delete_step)
            elif dep_delete is not None and apply_step is not None and c.action is Action.UPDATE \
                    and by_address[dep].action is not Action.DELETE_THEN_CREATE:
                # the old object goes once its dependent uses the new one (create_before_destroy); a replacement
                # deleted first cannot wait for that update, which waits for its new half: that would be a cycle
                graph[dep_delete].add(apply_step)
        for dep in c.released:  # what this resource used until now goes only once the change lets go of it
            dep_delete = deletes.get(dep)
            if dep_delete is not None and apply_step is not None:
                graph[dep_delete].add(apply_step)
    return graph
