"""The messages the simulator answers: a table from wire name (``VM.clone``) to the Python function that does it.

A handler takes the :class:`~tests.xensim.world.World` and then the message's parameters in the data model's
order, the session included when the message has one; the dispatcher has already checked the session, the
parameter count and types, and that every ref parameter names a live object of its class (unless the parameter
is listed in ``nullable``, where ``OpaqueRef:NULL`` is allowed too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Handler:
    name: str
    fn: Callable[..., Any]
    asyncable: bool = False
    nullable: frozenset[str] = field(default_factory=frozenset)


HANDLERS: dict[str, Handler] = {}


def message(name: str, *, asyncable: bool = False,
            nullable: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the handler of ``name`` (``Class.message``)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise ValueError(f"{name} registered twice")
        HANDLERS[name] = Handler(name, fn, asyncable, frozenset(nullable))
        return fn
    return register
