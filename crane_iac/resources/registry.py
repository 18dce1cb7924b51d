"""The registry a stack run collects into: what one run of a stack file declared, and the context variable (not a
process global) that holds it while the file runs. Resources, pools and declarations (``moved``, ``setting``)
record themselves in the registry that is current."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crane_iac.errors import Diagnostic

#: a resource (resources/base.py's Resource, which imports this module: named here by what it is, not imported)
Declared = Any

_PACKAGE_DIR = __file__.rsplit("/resources/", 1)[0]


@dataclass
class Registry:
    """What one run of a stack file declared, in construction order."""

    stack_file: str
    variables: dict[str, Any] = field(default_factory=dict)
    #: the stack's durable settings from state (key → value): what a controller or a person set with who and why
    settings: dict[str, Any] = field(default_factory=dict)
    resources: list[Declared] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    parents: list[Declared] = field(default_factory=list)
    #: ``moved(from_, to)`` declarations: (old address, new address, file, line)
    moves: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)
    #: ``import_(to, id)`` declarations: address → the object's name on the hypervisor (None: the address's)
    imports: dict[str, str | None] = field(default_factory=dict)
    #: hypervisor names recorded in state for addresses (after moves): a resource keeps the name it was created with
    pinned: dict[str, str] = field(default_factory=dict)
    #: the project's directory (where crane.toml is): relative paths a stack gives crane (a playbook) are from here
    project_dir: Path | None = None
    #: what one run of the stack computed once and may need again (a playbook's digest): files do not change
    #: within a load, and a long-lived process (crane watch) loads again with a new registry
    memo: dict[Any, Any] = field(default_factory=dict)
    #: the settings the stack read (``setting(key, default)``), in the order it read them: the plan says which of
    #: them are in effect, who set them and why
    settings_read: list[str] = field(default_factory=list)
    #: the stack's own value of each setting it read (``setting(key, default)``'s default, None when it has none):
    #: the plan warns when a setting overrides it
    setting_defaults: dict[str, Any] = field(default_factory=dict)
    #: address pools the stack declared or took values from (resources/ippools.py), by name
    pools: dict[str, Any] = field(default_factory=dict)
    #: the values pools lease to this stack's resources, as the engine leased them: (pool, address, field) → value
    leases: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: every value the stack took from a pool, in the order it took them (``LeaseWant``), and those it takes from
    #: networks whose subnet is a stand-in in this run (``DeferredWant``)
    lease_wants: list[Any] = field(default_factory=list)
    deferred_wants: list[Any] = field(default_factory=list)
    #: a network's own pool of addresses → the pool its subnet came from
    pool_parents: dict[str, str] = field(default_factory=dict)
    #: (address, field) → the pool a subnet was carved from, which the network's own addresses come from
    carved: dict[tuple[str, str], str] = field(default_factory=dict)
    #: whether some value is a stand-in (not leased yet), and the stand-ins handed out, by (pool, what)
    provisional: bool = False
    stand_ins: dict[tuple[str, str], Any] = field(default_factory=dict)
    stand_in_slots: set[tuple[str, str]] = field(default_factory=set)
    #: what each value not leased yet took in this run, as the lease that would give a run with leases the same
    #: value: (pool, address, field) → value; and the wants that run would note in place of this one's
    #: ``DeferredWant``s, each with its pool and the pool's parent (engine/leasing.py need not run the stack again
    #: when every lease is what stood in)
    stood_in: dict[tuple[str, str, str], str] = field(default_factory=dict)
    waiting_wants: list[Any] = field(default_factory=list)
    #: how a resource's values taken from address pools become the values leased (set by resources/ippools.py when
    #: the stack declares a pool): (registry, kind, address, data) → (data, the fields that took one)
    resolver: Any = None

    def location(self) -> tuple[str | None, int | None]:
        """The innermost line of the stack file (or a module outside crane) that is running now."""
        frame = sys._getframe(1)
        fallback: tuple[str | None, int | None] = (None, None)
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename == self.stack_file:
                return filename, frame.f_lineno
            if fallback == (None, None) and not filename.startswith(_PACKAGE_DIR) and "pydantic" not in filename:
                fallback = (filename, frame.f_lineno)
            frame = frame.f_back  # type: ignore[assignment]
        return fallback

    @contextmanager
    def parent(self, component: Declared) -> Iterator[None]:
        self.parents.append(component)
        try:
            yield
        finally:
            self.parents.pop()


_current: ContextVar[Registry | None] = ContextVar("crane_registry", default=None)


def current_registry() -> Registry | None:
    return _current.get()


@contextmanager
def collecting(registry: Registry) -> Iterator[Registry]:
    """Collect every resource constructed inside the block into ``registry``."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)
