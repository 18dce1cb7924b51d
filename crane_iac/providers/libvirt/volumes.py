"""Volumes as libvirt storage volumes (no metadata: crane adopts them through its intents): empty, on a backing file
(a VM template's disk too), from an image file, or a copy, or a directory; what a volume was made from libvirt cannot
say (but a template's disk, by its place in the library), so it comes from state."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import storage
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.copies import copy_volume, empty_directory
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.pools import list_pools
from crane_iac.providers.libvirt.rules import VOLUME_ORIGIN
from crane_iac.templates.library import Library


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


def _origin(p: dict[str, Any]) -> tuple[str, ...]:
    """The keys of a volume's origin that state keeps: ``snapshot`` only for a volume restored from one."""
    return (*VOLUME_ORIGIN, "snapshot") if "snapshot" in p else VOLUME_ORIGIN


class Volumes:
    """The ``volume`` kind."""

    def __init__(self, host: Host, library: Callable[[], Library] | None = None) -> None:
        """``library``: the host's template library, its pool made when the host has none (a volume on a template
        is backed by a disk there, and reads back as on that template only where that pool lists the library)."""
        self.host = host
        self.library = library

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        conn = self.host.conn
        pool = conn.storagePoolLookupByName(p["pool"])
        if p.get("snapshot"):
            vol = copy_volume(self.host, pool, physical, p["snapshot"], p.get("capacity_gib"), f"volume {physical}")
        elif p.get("source"):
            vol = storage.from_image(conn, pool, physical, p, upload=not self.host.test_driver)
        elif p.get("clone"):
            vol = storage.from_clone(conn, pool, physical, p, resize=not self.host.test_driver)
        elif p.get("template"):
            vol = self._on_template(pool, physical, p)
        elif p.get("format") == "dir":
            vol = pool.createXML(lx.render_volume(physical, 0, "dir", mode="0755"), 0)
        else:
            base_path, base_format = self._base(p["base"])
            vol = pool.createXML(lx.render_volume(physical, p["capacity_gib"] * storage.GIB, p["format"], base_path,
                                                  base_format), 0)
        return read_volume(conn, vol, "volume", p, _origin(p))

    def _on_template(self, pool: Any, physical: str, p: dict[str, Any]) -> Any:
        """A qcow2 volume backed by the template's disk, of the template's size or ``capacity_gib`` if more."""
        if self.library is None:
            raise ProviderError(f"volume {physical}: this host has no template library")
        library = self.library()
        disk = library.disk(p["template"])
        size = max(library.manifest(p["template"]).disk_bytes, (p.get("capacity_gib") or 0) * storage.GIB)
        return pool.createXML(lx.render_volume(physical, size, "qcow2", str(disk), "qcow2"), 0)

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
        return None if vol is None else read_volume(self.host.conn, vol, "volume", p, _origin(p))

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        """Grow the volume (the only change ``rules`` lets happen in place)."""
        pool = self.host.conn.storagePoolLookupByName(after["pool"])
        vol = self.host.resize(pool, pool.storageVolLookupByName(physical), after["capacity_gib"])
        return read_volume(self.host.conn, vol, "volume", after, _origin(after))

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        pool = self.host.conn.storagePoolLookupByName(p["pool"])
        vol = pool.storageVolLookupByName(physical)
        if p.get("format") != "dir" or self.host.test_driver:
            vol.delete(0)
            return
        # libvirt removes a directory volume with rmdir(2): what is in it goes first, where crane can reach it
        if self.host.local:
            empty_directory(Path(vol.path()), Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "/"))
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NOT_FOUND or self.host.local:
                raise
            raise ProviderError(f"directory volume {p['pool']}/{physical} on {self.host.uri} is not empty, and crane "
                                f"empties directories only on the host it runs on; empty {vol.path()} there and "
                                "apply again") from None
