"""Volumes as libvirt storage volumes (no metadata: crane adopts them through its intents): empty, on a backing file,
from an image file, or a copy; what a volume was made from libvirt cannot say, so it comes from state."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import storage
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.pools import list_pools
from crane_iac.providers.libvirt.rules import VOLUME_ORIGIN


def read_volume(conn: Any, vol: Any, kind: str, p: dict[str, Any], kept: tuple[str, ...]) -> Live:
    """The volume as libvirt reports it, with the ``kept`` properties (what libvirt cannot report) taken from ``p``."""
    pool_by_dir = {path: name for _, name, path in list_pools(conn)}
    props, outputs = lx.parse_volume(ET.fromstring(vol.XMLDesc(0)), p["pool"], pool_by_dir)
    return Live(kind, vol.name(), {**props, **{k: p.get(k) for k in kept}}, outputs)


def lookup_volume(conn: Any, pool: str, name: str) -> Any | None:
    """The volume ``name`` in ``pool``, or None when either is gone."""
    try:
        return conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in NOT_FOUND:
            return None
        raise


class Volumes:
    """The ``volume`` kind."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        conn = self.host.conn
        pool = conn.storagePoolLookupByName(p["pool"])
        if p.get("source"):
            vol = storage.from_image(conn, pool, physical, p, upload=not self.host.test_driver)
        elif p.get("clone"):
            vol = storage.from_clone(conn, pool, physical, p, resize=not self.host.test_driver)
        else:
            base_path, base_format = self._base(p["base"])
            vol = pool.createXML(lx.render_volume(physical, p["capacity_gib"] * storage.GIB, p["format"], base_path,
                                                  base_format), 0)
        return read_volume(conn, vol, "volume", p, VOLUME_ORIGIN)

    def _base(self, base: str | None) -> tuple[str | None, str]:
        """The backing file's path and format: ``base`` is a path on the host or ``pool/volume``."""
        if not base:
            return None, "raw"
        if base.startswith("/"):
            return base, "qcow2" if base.endswith(".qcow2") else "raw"
        base_pool, _, base_name = base.partition("/")
        vol = self.host.conn.storagePoolLookupByName(base_pool).storageVolLookupByName(base_name)
        fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
        return vol.path(), fmt.get("type", "raw") if fmt is not None else "raw"

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        vol = lookup_volume(self.host.conn, p["pool"], physical)
        return None if vol is None else read_volume(self.host.conn, vol, "volume", p, VOLUME_ORIGIN)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        """Grow the volume (the only change ``rules`` lets happen in place)."""
        pool = self.host.conn.storagePoolLookupByName(after["pool"])
        vol = self.host.resize(pool, pool.storageVolLookupByName(physical), after["capacity_gib"])
        return read_volume(self.host.conn, vol, "volume", after, VOLUME_ORIGIN)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        self.host.conn.storagePoolLookupByName(p["pool"]).storageVolLookupByName(physical).delete(0)
