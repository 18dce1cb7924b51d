"""StoragePools as libvirt storage pools (no metadata: crane adopts them through its intents), and which directories
crane made for a pool (its own and those above it that were missing), which libvirt cannot say later and which alone
are removed with the pool, when empty. A pool crane manages runs: one stopped outside crane (`virsh pool-destroy`)
reads as ``active: false``, and the plan starts it again in place."""

from __future__ import annotations

import contextlib
import os
import posixpath
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

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
    """A pool as libvirt reports it, running or not (without ``built`` and ``made_dirs``, which libvirt cannot say)."""
    props, outputs = lx.parse_pool(ET.fromstring(pool.XMLDesc(0)))
    return Live("pool", pool.name(), {**props, "active": bool(pool.isActive())}, outputs)


def with_facts(live: Live, built: bool, made: list[str]) -> Live:
    """The pool read back with what crane knows of its past: whether it built the pool's directory, and which
    directories it made."""
    return Live("pool", live.physical, {**live.properties, "built": built, "made_dirs": made}, live.outputs)


def missing_dirs(path: str) -> list[str]:
    """The directories of ``path`` (itself and those above it) that do not exist on this machine, outermost first."""
    missing = []
    while not os.path.isdir(path) and path != "/":
        missing.append(path)
        path = posixpath.dirname(path)
    return missing[::-1]


class Pools:
    """The ``pool`` kind."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        """Define, start and autostart the pool; its directory, and the missing ones above it, are built first."""
        conn = self.host.conn
        pool = conn.storagePoolDefineXML(lx.render_pool(physical, p), 0)
        made: list[str] = []
        try:
            if self.host.local:  # crane can look, and so knows which directories it made
                missing = missing_dirs(p["path"])
                if missing:
                    made = self.host.build_pool(pool, missing)
                pool.create(0)
            else:
                try:
                    pool.create(0)
                except libvirt.libvirtError:
                    pool.build(0)  # the directory is missing: the daemon makes it (and any missing above it)
                    made = [p["path"]]  # crane cannot look on another host: only the pool's own is known to be new
                    pool.create(0)
            pool.setAutostart(1)
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
            raise
        # which directories crane made: libvirt cannot say later, and only those are removed with the pool
        return with_facts(read_pool(pool), p["path"] in made, made)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        try:
            live = read_pool(self.host.conn.storagePoolLookupByName(physical))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NOT_FOUND:
                return None
            raise
        return with_facts(live, p.get("built", False), p.get("made_dirs", []))

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        """Start the pool again (``active``, the one change ``rules`` lets happen in place); its volumes, which
        libvirt cannot list while it is stopped, are there again."""
        pool = self.host.conn.storagePoolLookupByName(physical)
        if not pool.isActive():
            pool.create(0)
        return with_facts(read_pool(pool), before.get("built", False), before.get("made_dirs", []))

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        """Stop and undefine the pool; remove its directory, and those above it crane made for it, only when crane
        made them and they hold nothing."""
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
        if empty and self.host.local:
            remove_empty(p.get("made_dirs", []))


def remove_empty(made: list[str]) -> None:
    """Remove the directories crane made (outermost first in ``made``), deepest first, while they are empty: rmdir(2)
    leaves a directory that holds anything, and then every one above it too."""
    for directory in reversed(made):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue  # libvirt removed the pool's own
        except OSError:
            return
