"""Volumes made from an image file, a copy or a seed, their data sent over libvirt's own connection (no other channel
to a remote host); ``upload=False`` (the test driver) makes the volume at the right size and format, sending nothing."""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.providers.libvirt import images, seed
from crane_iac.providers.libvirt import xml as lx

CHUNK = 1024 * 1024
GIB = images.GIB


def volume_info(vol: Any) -> tuple[str, int]:
    """A volume's format (an ISO 9660 file counts as raw) and capacity in bytes."""
    root = ET.fromstring(vol.XMLDesc(0))
    props, _ = lx.parse_volume(root, "", {})
    return str(props["format"]), lx.capacity_bytes(root)


def upload(conn: Any, vol: Any, read: Callable[[int], bytes], length: int) -> None:
    """Send ``length`` bytes from ``read`` into ``vol``, a chunk at a time."""
    stream = conn.newStream(0)
    vol.upload(stream, 0, length, 0)
    try:
        sent = 0
        while sent < length:
            chunk = read(min(CHUNK, length - sent))
            if not chunk:
                raise ProviderError(f"the file ended after {sent} of {length} bytes while crane uploaded it")
            while chunk:
                done = stream.send(chunk)
                chunk = chunk[done:]
                sent += done
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def _fill(conn: Any, pool: Any, name: str, read: Callable[[int], bytes], length: int) -> Any:
    """A raw volume of exactly ``length`` bytes holding what ``read`` gives; removed again if the upload fails.
    libvirt re-reads the pool when an upload ends, so the volume looked up afterwards has the format it holds."""
    vol = pool.createXML(lx.render_volume(name, length, "raw"), 0)
    try:
        upload(conn, vol, read, length)
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            vol.delete(0)
        raise
    return pool.storageVolLookupByName(name)


def _grow(vol: Any, capacity: int) -> Any:
    if capacity > volume_info(vol)[1]:
        vol.resize(capacity, 0)
    return vol


def from_image(conn: Any, pool: Any, name: str, p: dict[str, Any], *, upload: bool) -> Any:
    """A volume holding the image file ``p['source']``, at least ``p['capacity_gib']`` large."""
    path = p["source"]
    problems = images.problems(path, p.get("format"), p.get("capacity_gib"))
    if problems:
        raise ProviderError("; ".join(problems))
    image = images.probe(path)
    wanted = (p.get("capacity_gib") or 0) * GIB
    if not upload:
        return pool.createXML(lx.render_volume(name, max(wanted, image.virtual_size), image.format), 0)
    with open(path, "rb") as handle:
        vol = _fill(conn, pool, name, handle.read, image.file_size)
    if volume_info(vol)[0] != image.format:  # the pool was not re-read (another upload held it): read it now
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        vol = pool.storageVolLookupByName(name)
    return _grow(vol, wanted)


def from_clone(conn: Any, pool: Any, name: str, p: dict[str, Any], *, resize: bool) -> Any:
    """A full copy of the volume ``p['clone']`` (``pool/volume``), in its format unless ``p['format']`` says."""
    source_pool, _, source_name = p["clone"].partition("/")
    source = conn.storagePoolLookupByName(source_pool).storageVolLookupByName(source_name)
    fmt, capacity = volume_info(source)
    wanted = (p.get("capacity_gib") or 0) * GIB
    vol = pool.createXMLFrom(lx.render_volume(name, max(wanted, capacity), p.get("format") or fmt), source, 0)
    return _grow(vol, wanted) if resize else vol


def seed_volume(conn: Any, pool: Any, name: str, p: dict[str, Any], *, upload: bool) -> Any:
    """A cloud-init seed: the ISO image built from a CloudInit's properties, as a raw volume."""
    data = seed.build(p)
    if not upload:
        return pool.createXML(lx.render_volume(name, len(data), "raw"), 0)
    return _fill(conn, pool, name, io.BytesIO(data).read, len(data))
