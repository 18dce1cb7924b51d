"""Copying and emptying volumes, for restores (a Volume from a Snapshot) and snapshots alike: a directory volume
copied with ``cp -a`` on the host crane runs on (libvirt has no call for it), a disk volume through libvirt's copy;
a directory volume emptied before libvirt deletes it."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.providers.libvirt import storage
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.host import Host


def pool_dir(pool: Any) -> Path:
    return Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "/")


def copy_directory(host: Host, source: Path, target: Path, what: str) -> None:
    """Copy what directory ``source`` holds into ``target`` (owners, modes, links and times kept: ``cp -a``); only on
    the host crane runs on, as libvirt has no call that copies a directory volume."""
    if host.test_driver:
        return  # the sandbox's volumes hold nothing
    if not host.local:
        raise ProviderError(f"{what}: crane copies directory volumes only on the host it runs on, not {host.uri}")
    done = subprocess.run(["cp", "-a", "--", f"{source}/.", f"{target}/"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ProviderError(f"{what}: copying {source} to {target} failed: {done.stderr.strip()}")


def copy_volume(host: Host, pool: Any, name: str, source_ref: str, capacity_gib: int | None, what: str) -> Any:
    """A new volume ``name`` in ``pool``: a full copy of ``source_ref`` (``pool/volume``) in its format."""
    conn = host.conn
    source_pool, _, source_name = source_ref.partition("/")
    source = conn.storagePoolLookupByName(source_pool).storageVolLookupByName(source_name)
    fmt, capacity = storage.volume_info(source)
    if fmt == "dir":
        vol = pool.createXML(lx.render_volume(name, 0, "dir", mode="0755"), 0)
        try:
            copy_directory(host, Path(source.path()), Path(vol.path()), what)
        except BaseException:
            empty_directory(Path(vol.path()), pool_dir(pool))
            vol.delete(0)
            raise
        return vol
    wanted = (capacity_gib or 0) * storage.GIB
    if host.test_driver:  # its volumes hold nothing, and its copy finds the source only in the target's pool
        return pool.createXML(lx.render_volume(name, max(wanted, capacity), fmt), 0)
    vol = pool.createXMLFrom(lx.render_volume(name, max(wanted, capacity), fmt), source, 0)
    if wanted > capacity and not host.test_driver:
        vol.resize(wanted, 0)
    return vol


def empty_directory(directory: Path, pool_dir: Path) -> None:
    """Remove what ``directory`` (a directory volume, in ``pool_dir``) holds; symbolic links are removed, never
    followed. Anything else at that path is left for libvirt's delete to refuse."""
    if directory.is_symlink() or not directory.is_dir() or directory.parent != pool_dir:
        return
    for entry in directory.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            raise ProviderError(f"emptying directory volume {directory} failed: {exc.strerror} ({exc.filename}); "
                                "remove what is in it and apply again") from None
