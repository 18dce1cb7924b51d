"""The simulator's view of the XenAPI data model (spec.json): field and parameter types, default records, and the
conversion between the model's Python values and xapi's XML-RPC wire values.

On the wire xapi sends an ``int`` as a decimal string (XML-RPC's ``<int>`` is 32-bit; memory sizes are not), a
``datetime`` as ``dateTime.iso8601`` (``19700101T00:00:00Z``), a ref as the string ``OpaqueRef:<uuid>``, a set as an
array and a map as a struct whose keys are strings. It accepts an int parameter as a string or an XML-RPC int.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import xmlrpc.client
from pathlib import Path
from typing import Any

from tests.xensim.errors import XenError

SPEC_FILE = Path(__file__).with_name("spec.json")
NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


@functools.cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_FILE.read_text())  # type: ignore[no-any-return]


def fields(cls: str) -> dict[str, dict[str, Any]]:
    return spec()["classes"][cls]["fields"]  # type: ignore[no-any-return]


def messages(cls: str) -> dict[str, dict[str, Any]]:
    return spec()["classes"][cls]["messages"]  # type: ignore[no-any-return]


def enum_values(name: str) -> list[str]:
    return spec()["enums"][name]  # type: ignore[no-any-return]


def zero(typ: str) -> Any:
    """The value of a field that has no default in the data model."""
    if typ.endswith(" set"):
        return []
    if typ.endswith(" map"):
        return {}
    if typ.endswith(" ref"):
        return NULL_REF
    if typ.startswith("enum "):
        return enum_values(typ[5:])[0]
    return {"string": "", "int": 0, "float": 0.0, "bool": False, "datetime": EPOCH}[typ]


def default_record(cls: str) -> dict[str, Any]:
    out = {}
    for name, f in fields(cls).items():
        value = f.get("default", zero(f["type"]))
        out[name] = json.loads(json.dumps(value))  # a fresh copy of lists and maps
    return out


def split_map(typ: str) -> tuple[str, str]:
    inner = typ[1:typ.rindex(")")]
    key, value = inner.split(" -> ", 1)
    return key, value


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H:%M:%SZ")


def encode(typ: str, value: Any) -> Any:
    """A model value as xapi puts it on the wire."""
    if typ == "int":
        return str(int(value))
    if typ == "float":
        return float(value)
    if typ == "datetime":
        return xmlrpc.client.DateTime(value)
    if typ.endswith(" set"):
        return [encode(typ[:-4], v) for v in value]
    if typ.endswith(" map"):
        ktyp, vtyp = split_map(typ)
        return {str(encode(ktyp, k)): encode(vtyp, v) for k, v in value.items()}
    if typ.endswith(" record"):
        return encode_record(typ[:-7], value)
    return value


def encode_record(cls: str, record: dict[str, Any]) -> dict[str, Any]:
    return {name: encode(f["type"], record[name]) for name, f in fields(cls).items()}


_INT = re.compile(r"^-?\d+$")


def decode(typ: str, value: Any, what: str) -> Any:
    """A wire parameter as a model value; FIELD_TYPE_ERROR naming ``what`` when it is not of ``typ``."""
    bad = XenError("FIELD_TYPE_ERROR", what)
    if typ == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _INT.match(value))):
            raise bad
        return int(value)
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if typ == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if typ == "datetime":
        return str(value)
    if typ.endswith(" set"):
        if not isinstance(value, list):
            raise bad
        return [decode(typ[:-4], v, what) for v in value]
    if typ.endswith(" map"):
        if not isinstance(value, dict):
            raise bad
        ktyp, vtyp = split_map(typ)
        return {decode(ktyp, k, what): decode(vtyp, v, what) for k, v in value.items()}
    if typ.endswith(" record"):
        if not isinstance(value, dict):
            raise bad
        return value
    if typ.startswith("enum "):
        if value not in enum_values(typ[5:]):
            raise bad
        return value
    if not isinstance(value, str):  # string, refs
        raise bad
    return value


def decode_create_record(cls: str, args: dict[str, Any]) -> dict[str, Any]:
    """The fields a ``<cls>.create`` record sets: every RW and RO/constructor field, those without a default
    required (FIELD_TYPE_ERROR naming the first one missing, as xapi's unmarshaller does)."""
    out: dict[str, Any] = {}
    for name, f in fields(cls).items():
        if f["qualifier"] == "RO/runtime":
            continue
        if name in args:
            out[name] = decode(f["type"], args[name], name)
        elif "default" not in f:
            raise XenError("FIELD_TYPE_ERROR", name)
    return out
