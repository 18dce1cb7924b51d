"""CloudInits as storage volumes holding a NoCloud seed image (built by seed.py, uploaded by storage.py); libvirt
cannot read the contents back, so they come from state, and new contents are a new volume."""

from __future__ import annotations

from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import storage
from crane_iac.providers.libvirt.host import Host
from crane_iac.providers.libvirt.rules import SEED_FIELDS
from crane_iac.providers.libvirt.volumes import lookup_volume, read_volume


class Seeds:
    """The ``cloudinit`` kind."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        pool = self.host.conn.storagePoolLookupByName(p["pool"])
        vol = storage.seed_volume(self.host.conn, pool, physical, p, upload=not self.host.test_driver)
        return read_volume(self.host.conn, vol, "cloudinit", p, SEED_FIELDS)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        vol = lookup_volume(self.host.conn, p["pool"], physical)
        return None if vol is None else read_volume(self.host.conn, vol, "cloudinit", p, SEED_FIELDS)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        raise ProviderError(f"cloudinit {physical!r} cannot be changed in place")

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        self.host.conn.storagePoolLookupByName(p["pool"]).storageVolLookupByName(physical).delete(0)
