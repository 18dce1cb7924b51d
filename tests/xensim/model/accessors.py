"""The generated accessors xapi has for every class (get_record, get_all, get_all_records, get_by_uuid,
get_by_name_label, get_/set_ of a field, add_to_/remove_from_ of a map field, add_/remove_ of a set field), for the
messages of spec.json no module registered a handler of its own for.

Only fields the data model marks RW have setters there, so a setter here never bypasses a constraint a class
module checks (VM's memory and VCPU setters are explicit messages, in model/vms.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.xensim import spec
from tests.xensim.errors import XenError
from tests.xensim.registry import HANDLERS, Handler


def _accessor(cls: str, msg: str) -> Callable[..., Any] | None:
    fields = spec.fields(cls)
    if msg == "get_record":
        return lambda w, s, ref: w.store.get(cls, ref)
    if msg == "get_all":
        return lambda w, s: list(w.store.all(cls))
    if msg == "get_all_records":
        return lambda w, s: w.store.all(cls)
    if msg == "get_by_uuid":
        return lambda w, s, value: w.store.by_uuid(cls, value)
    if msg == "get_by_name_label":
        return lambda w, s, label: w.store.find(cls, name_label=label)
    if msg.startswith("get_") and msg[4:] in fields:
        name = msg[4:]
        return lambda w, s, ref: w.store.get(cls, ref)[name]
    if msg.startswith("set_") and msg[4:] in fields:
        name = msg[4:]

        def setter(w: Any, s: str, ref: str, value: Any) -> None:
            w.store.get(cls, ref)[name] = value
        return setter
    if msg.startswith("add_to_") and msg[7:] in fields:
        name = msg[7:]

        def add_to(w: Any, s: str, ref: str, key: str, value: str) -> None:
            mapping = w.store.get(cls, ref)[name]
            if key in mapping:
                raise XenError("MAP_DUPLICATE_KEY", cls, name, ref, key)
            mapping[key] = value
        return add_to
    if msg.startswith("remove_from_") and msg[12:] in fields:
        name = msg[12:]
        return lambda w, s, ref, key: w.store.get(cls, ref)[name].pop(key, None) and None
    if msg.startswith("add_") and msg[4:] in fields:
        name = msg[4:]

        def add(w: Any, s: str, ref: str, value: Any) -> None:
            values = w.store.get(cls, ref)[name]
            if value not in values:
                values.append(value)
        return add
    if msg.startswith("remove_") and msg[7:] in fields:
        name = msg[7:]

        def remove(w: Any, s: str, ref: str, value: Any) -> None:
            values = w.store.get(cls, ref)[name]
            if value in values:
                values.remove(value)
        return remove
    return None


def register_accessors() -> None:
    for cls in spec.spec()["classes"]:
        for msg, m in spec.messages(cls).items():
            name = f"{cls}.{msg}"
            if name in HANDLERS or not m["implicit"]:
                continue
            fn = _accessor(cls, msg)
            if fn is not None:
                HANDLERS[name] = Handler(name, fn)

