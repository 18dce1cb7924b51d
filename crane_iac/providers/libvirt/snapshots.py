"""Snapshots as volumes of the template library's pool (``crane-templates``, made on first use): a qcow2 or raw
volume copied by libvirt, a directory volume copied file by file on the host crane runs on. What a snapshot was taken
of libvirt cannot say: it comes from state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import storage
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.copies import copy_volume, empty_directory, pool_dir
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.volumes import lookup_volume
from crane_iac.templates.library import LIBRARY_POOL

#: what a snapshot's read reports beside its pool: the volume it copies, from state
SNAPSHOT_FIELDS = ("pool", "volume")


def library_pool(conn: Any, default_dir: Path) -> Any:
    """The host's template library pool, defined, built and started at ``default_dir`` when the host has none."""
    try:
        pool = conn.storagePoolLookupByName(LIBRARY_POOL)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in NOT_FOUND:
            raise
        pool = conn.storagePoolDefineXML(lx.render_pool(LIBRARY_POOL, {"type": "dir", "path": str(default_dir)}), 0)
        pool.build(0)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)
    return pool


class Snapshots:
    """The ``snapshot`` kind."""

    def __init__(self, host: Host, library_dir: Path) -> None:
        self.host = host
        self.library_dir = library_dir

    def _pool(self, name: str) -> Any:
        if name == LIBRARY_POOL:
            return library_pool(self.host.conn, self.library_dir)
        return self.host.conn.storagePoolLookupByName(name)

    def _live(self, vol: Any, physical: str, p: dict[str, Any]) -> Live:
        fmt, _ = storage.volume_info(vol)
        return Live("snapshot", physical, {k: p.get(k) for k in SNAPSHOT_FIELDS}, {"path": vol.path(), "format": fmt})

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        vol = copy_volume(self.host, self._pool(p["pool"]), physical, p["volume"], None, f"snapshot {physical}")
        return self._live(vol, physical, p)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        vol = lookup_volume(self.host.conn, p["pool"], physical)
        return None if vol is None else self._live(vol, physical, p)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        raise ProviderError(f"snapshot {physical!r} cannot be changed in place")

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        pool = self.host.conn.storagePoolLookupByName(p["pool"])
        vol = pool.storageVolLookupByName(physical)
        if storage.volume_info(vol)[0] == "dir" and self.host.local and not self.host.test_driver:
            empty_directory(Path(vol.path()), pool_dir(pool))
        vol.delete(0)
