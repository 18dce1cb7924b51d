"""StoragePool: a directory on the hypervisor host that libvirt manages as a storage pool."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import field_validator

from crane_iac.resources.base import NAME_PATTERN, Resource


class StoragePool(Resource):
    """A ``dir`` storage pool at ``path`` (a directory on the hypervisor host). crane defines it, makes the directory
    (and those above it) when missing, starts the pool and marks it autostart. Destroying it removes the directories
    crane made for it, deepest first, while they are empty; changing ``path`` replaces the pool. Pass the object to
    ``Volume(pool=...)`` (or ``CloudInit(pool=...)``) so that the volume is created after the pool and deleted
    before it."""

    kind = "pool"

    path: str
    #: the pool's type; which types a provider makes is its rule (libvirt: ``dir``)
    type: str = "dir"

    @field_validator("path")
    @classmethod
    def _directory(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path on the hypervisor host")
        normal = posixpath.normpath(value)  # as libvirt stores it: no trailing or doubled slashes
        if normal.startswith("//"):
            normal = normal[1:]
        if normal == "/":
            raise ValueError("a pool cannot be the root directory")
        return normal

    def host_claims(self) -> list[tuple[str, str]]:
        # libvirt refuses a second pool on a directory another pool uses
        return [("pool directory", self.path)]

    def properties(self) -> dict[str, Any]:
        # the name too, as in libvirt's pool XML: the provider's plan-time check learns from it which pools the plan
        # creates, so that a volume in one of them is not reported as being in a missing pool
        return {"name": self.physical_name, "type": self.type, "path": self.path}


def pool_reference(value: StoragePool | str) -> StoragePool | str:
    """The ``pool`` field of a volume or seed: a StoragePool of the stack, or a valid name of a host pool."""
    if isinstance(value, str) and not NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a valid storage pool name")
    return value
