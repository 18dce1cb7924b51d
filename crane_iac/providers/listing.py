"""An optional capability of a provider: saying which objects of a listed kind its last ``read_all`` could not see.

A kind in ``listed_kinds`` is one ``read_all`` reports completely, so a recorded object of it that the read lacks
was deleted outside crane. Some objects can be out of sight for a while without being gone: libvirt cannot list the
volumes of a stopped pool. A provider whose read can miss objects that way implements ``PartialListing`` (checked
with ``isinstance``); the engine then keeps each such object as state recorded it instead of planning it anew. An
endpoint answers for the provider serving each kind.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PartialListing(Protocol):
    """What a provider whose read can miss objects of a listed kind answers."""

    def unlisted(self, kind: str, properties: dict[str, Any]) -> bool:
        """Whether the last ``read_all`` could not list an object of ``kind`` with these (recorded) properties, so
        that its absence says nothing (a volume of a stopped pool)."""
