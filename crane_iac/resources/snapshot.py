"""Snapshot: a point-in-time copy of a volume, kept in the template library's storage pool."""

from __future__ import annotations

from typing import Any

from pydantic import InstanceOf, field_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Resource
from crane_iac.resources.pool import pool_reference
from crane_iac.resources.volume import Volume

#: the template library's pool (crane_iac/templates/library.py's LIBRARY_POOL; resources import no I/O module)
LIBRARY_POOL = "crane-templates"


class Snapshot(Resource):
    """A full copy of ``volume`` taken when the snapshot is created, kept in ``pool`` (the template library's,
    which the provider makes when the host has none) as a volume of its own: a qcow2 or raw volume is copied by
    libvirt (``virStorageVolCreateXMLFrom``), a directory volume file by file (on the host crane runs on). The copy
    is as consistent as the volume is at that moment: stop what writes to it first, or accept a crash-consistent
    copy.

    It does not follow the volume afterwards: changing the volume changes nothing here, and ``crane apply --replace``
    takes the snapshot again. ``Volume(..., source=snapshot)`` restores it into a new volume."""

    kind = "snapshot"
    #: a snapshot is a volume of its pool, sharing the volumes' names
    kind_rule = Kind("snapshot", scope="pool", namespace="volume")

    volume: InstanceOf[Volume]
    pool: str = LIBRARY_POOL

    _pool = field_validator("pool")(classmethod(lambda _cls, value: pool_reference(value)))

    @property
    def reference(self) -> str:
        """``pool/volume``: how a restoring Volume names it."""
        return f"{self.pool}/{self.physical_name}"

    @property
    def format(self) -> str | None:
        """The copied volume's format, where the stack says it (None: that of what it was made from)."""
        fmt: str | None = self.volume.properties()["format"]
        return fmt

    def properties(self) -> dict[str, Any]:
        return {"pool": self.pool, "volume": self.volume.reference}
