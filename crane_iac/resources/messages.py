"""pydantic's validation errors in the stack's language: ``networks[0]: expected a Network, got str 'lan'``.

Messages a resource's own validators raise (``ValueError`` text) are kept as they are.
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

#: pydantic's ``<name>_type`` errors by Python's name for the type (``string_type``: a str)
_NAMES = {"string": "str"}
_BOUNDS = {
    "greater_than_equal": ("must be at least {ge}", None),
    "greater_than": ("must be greater than {gt}", None),
    "less_than_equal": ("must be at most {le}", None),
    "less_than": ("must be less than {lt}", None),
    "string_too_long": ("must be at most {max_length} characters", len),
    "string_too_short": ("must be at least {min_length} characters", len),
    "too_long": ("must have at most {max_length} items", len),
    "too_short": ("must have at least {min_length} items", len),
    "string_pattern_mismatch": ("must match {pattern}", None),
}


def show(value: Any) -> str:
    """A value as the stack wrote it, with its type: ``str 'lan'``, ``bool True``, ``Network network.lan``."""
    if value is None:
        return "None"
    if isinstance(value, BaseModel) and hasattr(value, "kind"):
        return f"{type(value).__name__} {getattr(value, 'address', '?')}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


#: words read out letter by letter whose first letter sounds like a vowel (``an ssh_key``)
_SPOKEN_AS_LETTERS = ("ssh", "lxc", "xml", "nfs", "rbd", "lvm", "mac")

#: vowels read as "you" (``a uuid``, ``a user``, ``a URL``)
_SOUNDS_LIKE_YOU = ("uuid", "uni", "us", "ur")


def with_article(word: str) -> str:
    """``word`` after the indefinite article it takes: ``an 'isolated'``, ``a 'nat'``, ``an ssh_key``, ``a vm``."""
    bare = word.lstrip("'\"`(").lower()
    vowel = (bare[:1] in tuple("aeiou") and not bare.startswith(_SOUNDS_LIKE_YOU)) or bare.startswith(
        _SPOKEN_AS_LETTERS)
    return f"{'an' if vowel else 'a'} {word}"


def _expected(err: ErrorDetails) -> str | None:
    """What a type error wanted (``an int``, ``a Network``, ``one of 'nat', ...``), or None for other errors."""
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in ("is_instance_of", "model_type"):
        return with_article(str(ctx.get("class") or ctx["class_name"]))
    if kind == "literal_error":
        return f"one of {ctx['expected']}"
    if kind.endswith("_type"):
        name = kind.removesuffix("_type")
        return with_article(_NAMES.get(name, name))
    return None


def _known(model: type[BaseModel]) -> list[str]:
    return sorted(f for f in model.model_fields if f != "name")  # the name is passed by position


def _suggestion(model: type[BaseModel], field: str) -> str | None:
    close = difflib.get_close_matches(field, _known(model), n=1)
    return close[0] if close else None


def _unknown(model: type[BaseModel], field: str) -> str:
    close = _suggestion(model, field)
    if close:
        return f"unknown field; did you mean {close}?"
    return f"unknown field; {model.__name__} takes {', '.join(_known(model))}"


def _message(model: type[BaseModel], err: ErrorDetails, where: str) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err["input"]
    if kind == "extra_forbidden":
        return _unknown(model, where)
    if kind == "missing":
        return "required field is missing"
    expected = _expected(err)
    if expected:
        return f"expected {expected}, got {repr(value) if kind == 'literal_error' else show(value)}"
    if kind in _BOUNDS:
        text, measure = _BOUNDS[kind]
        got = measure(value) if measure else repr(value)
        return f"{text.format(**ctx)}, got {got}"
    return err["msg"].removeprefix("Value error, ")


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _where(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, bool]:
    """``loc`` as ``field[0].key``; and True when it went on to name a member of a union (pydantic tries each)."""
    if not loc:
        return "", False
    field = model.model_fields.get(str(loc[0]))
    annotation: Any = field.annotation if field else None
    text = str(loc[0])
    for part in loc[1:]:
        if _is_union(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) > 1:
                return text, True
            annotation = members[0]
        origin, args = get_origin(annotation), get_args(annotation)
        if origin in (list, tuple, set, frozenset, dict):
            text += f"[{part!r}]" if origin is dict else f"[{part}]"
            annotation = args[-1] if args else None
        else:
            text += f".{part}"
            annotation = None
    return text, False


def describe(model: type[BaseModel], errors: list[ErrorDetails]) -> list[str]:
    """One ``location: message`` line per problem (just the message for a whole-model one), in pydantic's order.

    A value no member of a union accepts is one line (``expected a Volume or a str, got int 5``); a required field
    that an unknown field's suggestion names is not reported missing as well.
    """
    suggested = {_suggestion(model, str(e["loc"][0])) for e in errors if e["type"] == "extra_forbidden"}
    entries: list[str | tuple[str, list[ErrorDetails]]] = []
    unions: dict[str, list[ErrorDetails]] = {}
    for err in errors:
        where, in_union = _where(model, err["loc"])
        if in_union:
            if where not in unions:
                unions[where] = []
                entries.append((where, unions[where]))  # the same list, filled as its errors come
            unions[where].append(err)
        elif not (err["type"] == "missing" and where in suggested):
            message = _message(model, err, where)
            entries.append(f"{where}: {message}" if where else message)
    lines: list[str] = []
    for entry in entries:
        lines.extend([entry] if isinstance(entry, str) else _union_lines(model, *entry))
    return lines


def _union_lines(model: type[BaseModel], where: str, errors: list[ErrorDetails]) -> list[str]:
    """A member the value's type matched but whose constraint it broke says why; otherwise, what was expected."""
    specific = [e for e in errors if _expected(e) is None]
    if specific:
        return list(dict.fromkeys(f"{where}: {_message(model, e, where)}" for e in specific))
    wanted = " or ".join(dict.fromkeys(str(_expected(e)) for e in errors))
    return [f"{where}: expected {wanted}, got {show(errors[0]['input'])}"]
