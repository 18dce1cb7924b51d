"""A test double, named as one: ``MemoryProvider``, a provider that keeps its objects in a dict, as Terraform's mock
provider (internal/providers/testing/provider_mock.go) and httpx's ``MockTransport`` stand in for the real thing.

The engine is tested against it on its own: every call is recorded in order (``calls``), a call can be made to fail
as a refused call would (``fail``: a ``ProviderError``) or to wait until the test releases it (``block``: a
``Gate``, two ``threading.Event``), and objects can be put in place beforehand (``put``) as if made outside this
run. It keeps the contract's semantics: created objects carry their owner, deleting what is gone is not an error,
``diff`` marks the fields named in ``replaces`` as forcing a replacement and every other field as live, and
``read_all`` leaves out the keys named ``unreadable``, as a hypervisor that cannot report them back.

The same class serves the provider type ``memo`` (``open_endpoint``), whose only kind, ``memo``, exists in state
alone (it lists nothing live), as an address lease or a finished configuration run will: that proves the plug-in
seams, a provider type chosen by name from crane.toml, a kind that is not a hypervisor object, and ``listed_kinds``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Kind, Live, Owner, Reach
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest, changed_fields
from crane_iac.resources.base import Resource

#: how long a blocked call waits for its release before it fails (a test that forgets to release must not hang)
GATE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    """One call a ``MemoryProvider`` received: ``create``, ``update`` or ``delete``, with the object it named."""

    verb: str
    kind: str
    physical: str


@dataclass
class Gate:
    """A call held back: ``entered`` is set once the call arrived and waits; ``release()`` lets it go on."""

    entered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class MemoryProvider(Provider):
    """An endpoint in memory: objects by (kind, name), the calls received in order, and hooks to fail or hold one."""

    provider_type = "memory"

    def __init__(self, kinds: Iterable[str] = ("thing",), *, replaces: Iterable[str] = ("image",), listed: bool = True,
                 unreadable: Iterable[str] = (), max_parallelism: int | None = None,
                 calls: list[Call] | None = None) -> None:
        self.kinds = tuple(kinds)
        self.replaces = frozenset(replaces)
        self.listed = listed
        #: keys ``read_all`` leaves out, as a hypervisor that cannot report them back (refresh takes them from state)
        self.unreadable_keys = frozenset(unreadable)
        self.max_parallelism = max_parallelism
        #: what the endpoint has, by (kind, name)
        self.objects: dict[tuple[str, str], Live] = {}
        #: every mutating call, in the order received (a caller may share one list between instances)
        self.calls: list[Call] = [] if calls is None else calls
        self._failures: dict[tuple[str, str], str] = {}
        self._gates: dict[tuple[str, str], Gate] = {}
        self._lock = threading.Lock()
        self._serials = itertools.count(1)

    # -- the test's hooks

    def put(self, kind: str, physical: str, properties: dict[str, Any], owner: Owner | None = None) -> Live:
        """An object on the endpoint made before (or outside) the run under test, with crane's owner or none."""
        live = self._make(kind, physical, properties, owner)
        self.objects[kind, physical] = live
        return live

    def fail(self, verb: str, physical: str, message: str = "refused") -> None:
        """Make the next ``verb`` call on ``physical`` raise ``ProviderError(message)`` (after any gate on it)."""
        self._failures[verb, physical] = message

    def block(self, verb: str, physical: str) -> Gate:
        """Make the next ``verb`` call on ``physical`` wait until the returned gate is released."""
        gate = self._gates[verb, physical] = Gate()
        return gate

    def verbs(self) -> list[tuple[str, str]]:
        """The calls so far as (verb, name), for asserting an order."""
        return [(c.verb, c.physical) for c in self.calls]

    # -- the Provider contract

    @property
    def listed_kinds(self) -> frozenset[str]:
        return frozenset(self.kinds) if self.listed else frozenset()

    def unreadable(self, kind: str) -> frozenset[str]:
        return self.unreadable_keys

    def read_all(self) -> list[Live]:
        if not self.listed:
            return []
        hidden = self.unreadable_keys
        with self._lock:
            return [replace(live, properties={k: v for k, v in live.properties.items() if k not in hidden},
                            outputs=dict(live.outputs))
                    for live in self.objects.values()]

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        rules = {key: Reach.REPLACE if key in self.replaces else Reach.LIVE for key in {*before, *after}}
        return changed_fields(before, after, rules)

    def create(self, request: CreateRequest) -> Live:
        kind, physical, properties, owner = request.kind, request.physical, request.properties, request.owner
        self._enter("create", kind, physical)
        live = self._make(kind, physical, properties, owner)
        with self._lock:
            if (kind, physical) in self.objects:
                raise ProviderError(f"{kind} {physical!r} already exists")
            self.objects[kind, physical] = live
        return replace(live)

    def update(self, request: UpdateRequest) -> Live:
        kind, physical, after = request.kind, request.physical, request.after
        self._enter("update", kind, physical)
        with self._lock:
            old = self.objects.get((kind, physical))
            if old is None and self.listed:  # a state-only kind is not kept here between runs
                raise ProviderError(f"{kind} {physical!r} does not exist")
            live = replace(old, properties=dict(after)) if old else self._make(kind, physical, after, None)
            self.objects[kind, physical] = live
        return replace(live)

    def delete(self, request: DeleteRequest) -> None:
        self._enter("delete", request.kind, request.physical)
        with self._lock:
            self.objects.pop((request.kind, request.physical), None)

    # -- inside

    def _enter(self, verb: str, kind: str, physical: str) -> None:
        """Record the call, wait at its gate if it has one, and fail it if the test said so."""
        with self._lock:
            self.calls.append(Call(verb, kind, physical))
            gate = self._gates.pop((verb, physical), None)
        if gate is not None:
            gate.entered.set()
            if not gate.released.wait(GATE_TIMEOUT):
                raise ProviderError(f"{verb} {physical!r} was never released by the test")
        with self._lock:
            message = self._failures.pop((verb, physical), None)
        if message is not None:
            raise ProviderError(message)

    def _make(self, kind: str, physical: str, properties: dict[str, Any], owner: Owner | None) -> Live:
        # a new object has a new id, as a replaced VM has a new UUID
        outputs = {"id": f"{kind}/{physical}#{next(self._serials)}"}
        return Live(kind, physical, dict(properties), outputs, owner.stack if owner else None,
                    owner.address if owner else None)


#: every call the ``memo`` endpoints of this process received (each run opens its own provider)
MEMO_CALLS: list[Call] = []


class Memo(Resource):
    """A note kept in state: ``Memo("release", text="v1")``."""

    kind: ClassVar[str] = "memo"
    kind_rule: ClassVar[Kind | None] = Kind("memo", provider="memo")
    text: str

    def properties(self) -> dict[str, Any]:
        return {"text": self.text}


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> MemoryProvider:
    """The ``memo`` provider type: a state-only kind (nothing listed live) whose text changes in place."""
    return MemoryProvider(("memo",), replaces=(), listed=False, calls=MEMO_CALLS)
