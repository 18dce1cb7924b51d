"""What crane knows of one object, shared by every layer: as the stack wants it (``Desired``), as state recorded it
(``Recorded``), as an endpoint has it now (``Live``), how one field changes (``FieldChange``), and the closed
vocabularies the engine, the state store and the renderers branch on.

Resource kinds register here (``Kind``): how a kind's objects are named uniquely on an endpoint, and which
provider type serves it. The stack's resource models register their kinds when they are defined; a provider
plug-in or a later subsystem (app domains, address pools) registers its own without touching this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: the endpoint a resource uses when it names none: the stack's only endpoint, or its sandbox
DEFAULT_ENDPOINT = "default"


class Action(StrEnum):
    """What apply will do to one resource."""

    CREATE = "create"
    UPDATE = "update"
    DELETE_THEN_CREATE = "delete-then-create"
    CREATE_THEN_DELETE = "create-then-delete"
    DELETE = "delete"
    NOOP = "no-op"

    @property
    def is_replace(self) -> bool:
        return self in (Action.DELETE_THEN_CREATE, Action.CREATE_THEN_DELETE)


class Reach(StrEnum):
    """How a changed field reaches the object: ``live`` (in place, nothing restarts), ``restart`` (in place, taking
    effect when apply restarts the object), ``replace`` (a new object) or ``state`` (crane's own record of it, such
    as ``protect``: nothing on the endpoint changes)."""

    LIVE = "live"
    RESTART = "restart"
    REPLACE = "replace"
    STATE = "state"


class Reason(StrEnum):
    """Why a change is in the plan beyond a difference of fields; the value is what the plan shows."""

    GONE = "deleted outside crane"
    ADOPTED = "adopted: created by crane but not recorded"
    IMPORTED = "import: it exists on the hypervisor; crane records it"
    FORCED = "--replace"
    FORGET = "already gone: forget it"
    ORPHAN = "orphan: created by crane but never recorded"


class Outcome(StrEnum):
    """What one committed step did to a record; the state history's action column."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    ADOPT = "adopt"
    IMPORT = "import"
    FORGET = "forget"
    REFRESH = "refresh"
    MOVE = "move"


class Verb(StrEnum):
    """What a step event reports: a step starting, a step done, or a step that did not happen."""

    CREATING = "creating"
    UPDATING = "updating"
    DELETING = "deleting"
    ADOPTING = "adopting"
    IMPORTING = "importing"
    FORGETTING = "forgetting"
    CREATED = "created"
    UPDATED = "updated"
    REPLACED = "replaced"
    DELETED = "deleted"
    ADOPTED = "adopted"
    IMPORTED = "imported"
    FORGOTTEN = "forgotten"
    MOVED = "moved"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: a step under way says how far it has got (a provider's long call: ``detail``); it neither starts nor ends it
    PROGRESS = "progress"

    @property
    def starting(self) -> bool:
        """A step under way (its outcome is reported later), not one that ended."""
        return self in _STARTING


_STARTING = frozenset({Verb.CREATING, Verb.UPDATING, Verb.DELETING, Verb.ADOPTING, Verb.IMPORTING, Verb.FORGETTING})


@dataclass(frozen=True, slots=True)
class Kind:
    """A resource kind's identity rule and who serves it.

    ``scope``: the property naming the container an object's name is unique in (a volume's pool), or None when
    names are unique per endpoint. ``namespace``: the kind whose names it shares (a cloud-init seed is a volume).
    ``provider``: the provider type that serves the kind, or None for whichever hypervisor provider the resource's
    endpoint has (``libvirt``, ``xenapi``).
    """

    name: str
    scope: str | None = None
    namespace: str | None = None
    provider: str | None = None


_KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Make a kind known; registering the same rule twice is harmless, a different rule for a name is a bug."""
    known = _KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"kind {kind.name!r} is registered already with another rule: {known}")
    return kind


def kind_of(name: str) -> Kind:
    """The registered rule for ``name``; an unregistered kind is named per endpoint and served by its hypervisor."""
    return _KINDS.get(name) or Kind(name)


def identity(kind: str, physical: str, properties: dict[str, Any], endpoint: str = DEFAULT_ENDPOINT) -> tuple[str, ...]:
    """What names an object uniquely: its endpoint, its kind's namespace, and its name within its scope
    (``("default", "volume", "images/disk")``)."""
    rule = _KINDS.get(kind)
    if rule is None:
        return endpoint, kind, physical
    namespace = rule.namespace or kind
    if rule.scope is None:
        return endpoint, namespace, physical
    return endpoint, namespace, f"{properties.get(rule.scope, '')}/{physical}"


def scope_properties(kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The properties ``identity`` needs beside the name (what an intent keeps so a crash can be matched)."""
    rule = _KINDS.get(kind)
    return {rule.scope: properties.get(rule.scope)} if rule is not None and rule.scope else {}


@dataclass(frozen=True, slots=True)
class Owner:
    """Who an object belongs to, written into the endpoint's own metadata where it has a place for it."""

    stack: str
    address: str


@dataclass(slots=True)
class Desired:
    """A resource as the stack declares it."""

    address: str
    kind: str
    physical: str
    properties: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    create_before_destroy: bool = False
    file: str | None = None
    line: int | None = None
    endpoint: str = DEFAULT_ENDPOINT


@dataclass(slots=True)
class Recorded:
    """A resource as the state store last recorded it."""

    address: str
    kind: str
    physical: str
    properties: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    endpoint: str = DEFAULT_ENDPOINT
    #: the endpoint as it was when the object was made or last changed: its type and its crane.toml settings (never a
    #: secret: a password is never in crane.toml, and a URI's is masked), canonical JSON; "" when recorded by a crane
    #: before schema 8 (taken as the endpoint's type now). A type that differs from the endpoint's now is a stack
    #: moved to another hypervisor (engine/retired.py)
    endpoint_config: str = ""


def retired_endpoint(endpoint: str, old_type: str) -> str:
    """The name an endpoint's objects of its former type are planned under (``default@libvirt``), once crane.toml
    gives the endpoint another type: no declared endpoint has an ``@`` in its name."""
    return f"{endpoint}@{old_type}"


def retired_from(name: str) -> tuple[str, str] | None:
    """(endpoint, former type) of a ``retired_endpoint`` name, or None for a declared endpoint's."""
    endpoint, at, old_type = name.partition("@")
    return (endpoint, old_type) if at else None


@dataclass(slots=True)
class Live:
    """A resource as its endpoint reports it now."""

    kind: str
    physical: str
    properties: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    owner_stack: str | None = None
    owner_address: str | None = None
    endpoint: str = DEFAULT_ENDPOINT


@dataclass(slots=True)
class FieldChange:
    """One field's change, judged by the provider that serves the resource."""

    name: str
    before: Any
    after: Any
    reach: Reach = Reach.LIVE
    #: an in-place change of this field changes the resource's outputs too (starting a VM changes its address)
    changes_outputs: bool = False
    #: the provider's own words for what the change does, shown in the plan (``restarts the guest``)
    note: str = ""

    @property
    def forces_replacement(self) -> bool:
        return self.reach is Reach.REPLACE
