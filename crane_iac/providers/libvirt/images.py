"""Disk image files on the machine running crane: what format and size they are, read from their header."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

GIB = 1024**3
_QCOW2 = b"QFI\xfb"
#: formats crane does not upload (it copies bytes and does not convert), by their magic at offset 0
_OTHER = {b"KDMV": "VMDK", b"# Disk DescriptorFile": "VMDK", b"vhdxfile": "VHDX", b"conectix": "VHD",
          b"QED\x00": "QED", b"LUKS\xba\xbe": "LUKS"}
_VDI_MAGIC = (0x40, b"\x7f\x10\xda\xbe")


class ImageError(ValueError):
    """The file cannot be uploaded as a volume; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Image:
    """``format`` is ``qcow2`` or ``raw``; ``virtual_size`` is what the guest sees, ``file_size`` what is uploaded."""

    format: str
    virtual_size: int
    file_size: int


def probe(path: str) -> Image:
    """Read the image's header; raises ``ImageError`` for a file crane cannot upload as it is."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
            size = os.fstat(handle.fileno()).st_size
    except IsADirectoryError:
        raise ImageError(f"{path!r} is a directory, not an image file") from None
    except FileNotFoundError:
        raise ImageError(f"{path!r} does not exist on the machine running crane") from None
    except OSError as exc:
        raise ImageError(f"{path!r} cannot be read: {exc.strerror}") from None
    if size == 0:
        raise ImageError(f"{path!r} is empty")
    if head.startswith(_QCOW2) and len(head) >= 40:
        _version, backing_offset, _backing_size, _cluster_bits, virtual_size, crypt = struct.unpack(
            ">IQIIQI", head[4:36])
        if backing_offset:
            raise ImageError(f"{path!r} is a qcow2 image with a backing file, which the host would not have; "
                             "flatten it first: qemu-img convert -O qcow2 IMAGE FLAT.qcow2")
        if crypt:
            raise ImageError(f"{path!r} is an encrypted qcow2 image; crane uploads unencrypted images")
        return Image("qcow2", virtual_size, size)
    for magic, name in _OTHER.items():
        if head.startswith(magic):
            raise ImageError(f"{path!r} is a {name} image; crane uploads qcow2 or raw images as they are: convert it "
                             "first (qemu-img convert -O qcow2 IMAGE IMAGE.qcow2)")
    offset, magic = _VDI_MAGIC
    if head[offset:offset + len(magic)] == magic:
        raise ImageError(f"{path!r} is a VDI image; convert it first (qemu-img convert -O qcow2 IMAGE IMAGE.qcow2)")
    return Image("raw", size, size)


def problems(path: str, fmt: str | None, capacity_gib: int | None) -> list[str]:
    """Why ``path`` cannot become a volume of ``fmt`` (None: the image's) and ``capacity_gib`` (None: its size)."""
    try:
        image = probe(path)
    except ImageError as exc:
        return [f"source {exc}"]
    found = []
    if fmt is not None and fmt != image.format:
        found.append(f"source {path!r} is a {image.format} image, not {fmt}: crane uploads it as it is; set "
                     f"format={image.format!r} or leave format out")
    if capacity_gib is not None and capacity_gib * GIB < image.virtual_size:
        least = -(-image.virtual_size // GIB)
        found.append(f"capacity_gib={capacity_gib} is smaller than the image's virtual size "
                     f"({image.virtual_size / GIB:.2f} GiB); leave capacity_gib out or give at least {least}")
    return found
