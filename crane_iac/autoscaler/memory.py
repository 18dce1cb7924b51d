"""What the autoscaler keeps of a tier between periods, as the JSON the state store keeps (``StateStore.remember``):
the decision's ``History`` and when the loop first saw each server (its warm-up), so that a loop restarted or taken
over by a standby replica carries on exactly where the last one stopped.

The History is written field by field from ``dataclasses.fields`` and read back by each field's type, so the
decision may gain, lose or rename fields without a change here: a key the History no longer has is ignored, a field
the stored value lacks (or holds in a shape its type no longer takes) gets its default. Enums are stored by value,
tuples as lists; a server first seen before the loop started (counted as warmed up) is stored as None.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from crane_iac.autoscaler.decision import History


@dataclass(frozen=True, slots=True)
class TierMemory:
    """A tier's History and when each of its servers (by hypervisor name) was first seen (-inf: warmed up)."""

    history: History = field(default_factory=History)
    first_seen: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"history": dump_history(self.history),
                "first_seen": {k: None if math.isinf(v) else v for k, v in sorted(self.first_seen.items())}}

    @classmethod
    def from_json(cls, value: Any) -> TierMemory:
        """What ``to_json`` wrote (anything else, in part or whole, is read as nothing kept)."""
        if not isinstance(value, dict):
            return cls()
        seen = value.get("first_seen")
        first = {k: -math.inf if v is None else float(v) for k, v in seen.items()
                 if isinstance(k, str) and (v is None or isinstance(v, (int, float)))} if isinstance(seen, dict) else {}
        return cls(load_history(value.get("history")), first)


def dump_history(history: History) -> dict[str, Any]:
    """The History as JSON, field by field."""
    return {f.name: _plain(getattr(history, f.name)) for f in dataclasses.fields(History)}


def load_history(value: Any) -> History:
    """The History ``dump_history`` wrote: unknown keys ignored, missing or unreadable fields defaulted."""
    if not isinstance(value, dict):
        return History()
    hints = typing.get_type_hints(History)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(History):
        if f.name in value:
            try:
                kwargs[f.name] = _typed(value[f.name], hints[f.name])
            except (TypeError, ValueError):
                pass  # a shape this History's field no longer takes: its default
    return History(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _typed(value: Any, hint: Any) -> Any:
    """``value`` (JSON) as ``hint`` says; TypeError or ValueError where it cannot be."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _typed(value, arg)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{value!r} is none of {hint}")
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"{value!r} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0]) for v in value)
        if len(args) != len(value):
            raise ValueError(f"{value!r} has not {len(args)} items")
        return tuple(_typed(v, a) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{value!r} is not a list")
        return [_typed(v, args[0]) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{value!r} is not an object")
        return {_typed(k, args[0]): _typed(v, args[1]) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{value!r} is not a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{value!r} is not an integer")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise TypeError(f"{value!r} is not a {hint.__name__}")
    return value
