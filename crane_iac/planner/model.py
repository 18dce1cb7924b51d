"""The planner's values: what the stack wants, what state recorded, what the hypervisor has, and the Plan."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError

from crane_iac.objects import DEFAULT_ENDPOINT, Action, FieldChange, Reason

PLAN_FORMAT_VERSION = 11


class Phase(StrEnum):
    """The half of a change one apply step does: remove the old object, or create/update the new one."""

    DELETE = "delete"
    APPLY = "apply"


class Differ(Protocol):
    """The provider's judgement of a change: which fields differ and which of them force a replacement."""

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]: ...


@runtime_checkable
class KeepsOutputs(Protocol):
    """A differ that knows which outputs an in-place change leaves as they are (a restarted VM keeps its UUID): the
    plan shows them, not "known after apply". A differ without it has every output of a changed object unknown."""

    def kept_outputs(self, kind: str) -> frozenset[str]: ...


@dataclass(slots=True)
class ResourceChange:
    address: str
    kind: str
    physical: str
    action: Action
    fields: list[FieldChange] = field(default_factory=list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    reason: Reason | None = None
    endpoint: str = DEFAULT_ENDPOINT
    #: the endpoint the old object is deleted from, when a replacement moves the resource to another endpoint
    from_endpoint: str | None = None
    #: the old object's name, when its replacement has another (create_before_destroy: both exist for a while)
    from_physical: str | None = None
    #: what the endpoint says of this change beyond its fields (a configuration run skipped where no guest runs)
    note: str = ""
    #: recorded dependencies the change no longer has: their deletion waits for it (a balancer lets a server go
    #: before the server is destroyed)
    released: list[str] = field(default_factory=list)
    #: an object adopted or imported as it is (a no-op change), or one whose record takes what was read (a state-only
    #: update of drifted fields): its outputs as the plan read them, which the apply records with it (it calls no
    #: provider, which would report them)
    outputs: dict[str, Any] | None = None


@dataclass(slots=True)
class LeaseRelease:
    """A lease of an address pool the apply gives back, a change of crane's state only (nothing on the hypervisor
    changes): ``value`` of ``pool``, leased to the stack's resource ``address`` for its field ``slot``, and why no
    one needs it. The release is written with the apply's last commit, so only an apply that succeeded gives it
    back, and a plan made after a crash shows it again."""

    pool: str
    value: str
    address: str
    slot: str
    why: str


@dataclass(slots=True)
class TierShown:
    """A scalable tier as a plan shows it: the size in effect, the declared range, the stack's own size, and who
    set the size (``stack``, or the setting's author) with why. ``effect`` says what became of a setting: "held"
    (it is the size), "clamped" (outside the range: the size is the nearest end), "ignored" (not a number of
    servers: the stack's size holds); "" without one. ``asked`` is the setting's value, as JSON."""

    address: str
    tier: str
    size: int
    declared: int
    min: int
    max: int
    owner: str = "stack"
    why: str = ""
    effect: str = ""
    asked: str = ""


@dataclass(slots=True)
class Drift:
    """A difference between what state recorded and what the hypervisor has, made outside crane."""

    address: str
    fields: list[FieldChange] = field(default_factory=list)
    gone: bool = False


@dataclass
class Plan:
    """A first-class, serialisable plan: apply consumes only this."""

    stack: str
    lineage: str
    serial: int
    changes: list[ResourceChange] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    unchanged: int = 0
    refreshed: bool = True
    targets: list[str] = field(default_factory=list)
    destroy: bool = False
    #: with targets: addresses outside them that have changes pending (a plan without --target would show them)
    untargeted: list[str] = field(default_factory=list)
    #: records apply re-addresses first (``moved`` declarations): [old address, new address]
    moves: list[list[str]] = field(default_factory=list)
    #: the durable settings in effect that the stack read: {key, value, by, why, at} (a tier's size the autoscaler
    #: set, with its reason): a human apply honours them
    settings: list[dict[str, Any]] = field(default_factory=list)
    #: the tiers a controller may resize (a component's ``ScalesTiers``, ``AppDomain(autoscale=...)``)
    tiers: list[TierShown] = field(default_factory=list)
    #: settings that override the stack's own value (a variable, a size in the stack): {key, value, stack_value,
    #: by, why, at}; the plan warns of each, and ``--detailed-exitcode`` is 2 while one holds
    overrides: list[dict[str, Any]] = field(default_factory=list)
    #: settings of components this apply removes entirely, deleted with them: {key, value, by, component}
    settings_dropped: list[dict[str, Any]] = field(default_factory=list)
    #: leases the apply gives back to their pools (state only): of resources that no longer take the value, and
    #: planned ones no resource will use (a plan never applied, an apply stopped before its create)
    leases_released: list[LeaseRelease] = field(default_factory=list)
    #: what the providers warn of in resources the stack declares, changed or not: {address, message} (a container
    #: on a template whose base changed since it was built); nothing to apply
    warnings: list[dict[str, str]] = field(default_factory=list)
    format_version: int = PLAN_FORMAT_VERSION

    @property
    def has_changes(self) -> bool:
        # a no-op with a reason is an adoption: nothing changes on the hypervisor, but state must record it
        return (any(c.action is not Action.NOOP or c.reason for c in self.changes) or bool(self.outputs_changed)
                or bool(self.moves) or bool(self.settings_dropped) or bool(self.leases_released))

    outputs_changed: bool = False
    #: the stack outputs that change: before (None when new) and after (a marker when known after apply)
    output_changes: list[FieldChange] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        result = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for c in self.changes:
            if c.action is Action.CREATE:
                result["create"] += 1
            elif c.action is Action.UPDATE:
                result["update"] += 1
            elif c.action.is_replace:
                result["replace"] += 1
            elif c.action is Action.DELETE:
                result["delete"] += 1
        return result

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """A saved plan, read through the same types that give docs/plan.schema.json, strictly (crane wrote it: a
        string where a number belongs is a damaged file, not a number); a ValueError names each wrong field."""
        data = json.loads(text)
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != PLAN_FORMAT_VERSION:
            raise ValueError(f"plan format {version!r} is not {PLAN_FORMAT_VERSION}")
        try:
            return plan_type().validate_json(text, strict=True)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()]
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise ValueError("; ".join(problems[:3]) + more) from None


@cache
def plan_type() -> TypeAdapter[Plan]:
    """The pydantic view of ``Plan``: its JSON schema (crane_iac/planner/schema.py) and the validation of a saved
    plan are both this."""
    return TypeAdapter(Plan)
