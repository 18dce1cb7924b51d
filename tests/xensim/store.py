"""The pool's database: every object by its opaque ref, each with the class it belongs to and its record.

Refs are ``OpaqueRef:<uuid4>``, distinct from the record's own ``uuid`` field, as xapi's are. A destroyed object's
ref is gone for good: using it is ``HANDLE_INVALID``. All access holds ``lock`` (re-entrant), so a call's checks and
changes are one atomic step against the other server threads and the task workers.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from typing import Any

from tests.xensim import spec
from tests.xensim.errors import XenError

Record = dict[str, Any]


def new_ref() -> str:
    return f"OpaqueRef:{uuid.uuid4()}"


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._class: dict[str, str] = {}
        self._records: defaultdict[str, dict[str, Record]] = defaultdict(dict)

    def create(self, cls: str, **values: Any) -> str:
        """A new object of ``cls``: the data model's defaults, a fresh uuid, then ``values``."""
        record = spec.default_record(cls)
        record["uuid"] = str(uuid.uuid4())
        unknown = set(values) - set(record)
        if unknown:
            raise KeyError(f"{cls} has no fields {sorted(unknown)}")
        record.update(values)
        ref = new_ref()
        with self.lock:
            self._class[ref] = cls
            self._records[cls][ref] = record
        return ref

    def class_of(self, ref: str) -> str | None:
        return self._class.get(ref)

    def get(self, cls: str, ref: str) -> Record:
        with self.lock:
            record = self._records[cls].get(ref)
        if record is None:
            raise XenError("HANDLE_INVALID", cls, ref)
        return record

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self._records[cls]

    def all(self, cls: str) -> dict[str, Record]:
        with self.lock:
            return dict(self._records[cls])

    def destroy(self, cls: str, ref: str) -> Record:
        with self.lock:
            record = self.get(cls, ref)
            del self._records[cls][ref]
            del self._class[ref]
            return record

    def find(self, cls: str, **match: Any) -> list[str]:
        with self.lock:
            return [ref for ref, rec in self._records[cls].items()
                    if all(rec[k] == v for k, v in match.items())]

    def by_uuid(self, cls: str, value: str) -> str:
        found = self.find(cls, uuid=value)
        if not found:
            raise XenError("UUID_INVALID", cls, value)
        return found[0]

    def link(self, cls: str, ref: str, field: str, other: str) -> None:
        """Add ``other`` to the set field ``field`` of ``ref`` (a back-reference)."""
        refs = self.get(cls, ref)[field]
        if other not in refs:
            refs.append(other)

    def unlink(self, cls: str, ref: str, field: str, other: str) -> None:
        if self.exists(cls, ref):
            refs = self.get(cls, ref)[field]
            if other in refs:
                refs.remove(other)
