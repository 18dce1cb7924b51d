"""StoragePools as libvirt storage pools (no metadata: crane adopts them through its intents), and whether crane
made a pool's directory, which libvirt cannot say later and which alone is removed with the pool."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.host import NOT_FOUND, Host


def list_pools(conn: Any) -> list[tuple[Any, str, str]]:
    """Every pool as (pool, name, directory)."""
    pools = []
    for pool in conn.listAllStoragePools(0):
        root = ET.fromstring(pool.XMLDesc(0))
        pools.append((pool, pool.name(), root.findtext("target/path") or ""))
    return pools


def read_pool(pool: Any) -> Live:
    """A pool as libvirt reports it (without ``built``, which libvirt cannot say)."""
    props, outputs = lx.parse_pool(ET.fromstring(pool.XMLDesc(0)))
    return Live("pool", pool.name(), props, outputs)


class Pools:
    """The ``pool`` kind."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        """Define, start and autostart the pool; libvirt builds its directory when it is missing."""
        conn = self.host.conn
        pool = conn.storagePoolDefineXML(lx.render_pool(physical, p), 0)
        built = False
        try:
            try:
                pool.create(0)
            except libvirt.libvirtError:
                pool.build(0)  # the directory is missing: the daemon makes it (it may be allowed where crane is not)
                built = True
                pool.create(0)
            pool.setAutostart(1)
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
            raise
        live = read_pool(pool)
        # whether crane made the directory: libvirt cannot say later, and only such a directory is removed with it
        return Live("pool", physical, {**live.properties, "built": built}, live.outputs)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        try:
            live = read_pool(self.host.conn.storagePoolLookupByName(physical))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NOT_FOUND:
                return None
            raise
        return Live("pool", physical, {**live.properties, "built": p.get("built", False)}, live.outputs)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        raise ProviderError(f"pool {physical!r} cannot be changed in place")

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        """Stop and undefine the pool; remove its directory only when crane made it and it holds nothing."""
        pool = self.host.conn.storagePoolLookupByName(physical)
        empty = False
        if pool.isActive():
            if p.get("built"):
                pool.refresh(0)
                empty = pool.numOfVolumes() == 0
            pool.destroy()
        if empty:
            with contextlib.suppress(libvirt.libvirtError):  # a hidden file: the directory stays
                pool.delete(libvirt.VIR_STORAGE_POOL_DELETE_NORMAL)
        pool.undefine()
