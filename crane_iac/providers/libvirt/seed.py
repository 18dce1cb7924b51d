"""cloud-init NoCloud seeds: an ISO 9660 image labelled ``cidata`` built in memory with pycdlib (no system tools),
with Rock Ridge and Joliet names so that a Linux guest sees user-data, meta-data and network-config by name."""

from __future__ import annotations

import io
import json
from typing import Any

LABEL = "cidata"
#: file name → the 8.3 name plain ISO 9660 holds (Rock Ridge and Joliet carry the real one)
_ISO_NAMES = {"user-data": "/USERDATA.;1", "meta-data": "/METADATA.;1", "network-config": "/NETWORKC.;1"}


def _text(value: Any, header: str = "") -> bytes:
    """A file's contents: text as given; a dict as JSON (which YAML readers accept), after ``header``."""
    if isinstance(value, str):
        return value.encode()
    return (header + json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def seed_files(properties: dict[str, Any]) -> dict[str, bytes]:
    """The files of a seed with a CloudInit's properties."""
    files = {"user-data": _text(properties["user_data"], "#cloud-config\n"),
             "meta-data": _text(properties["meta_data"])}
    if properties.get("network_config") is not None:
        files["network-config"] = _text(properties["network_config"])
    return files


def build_iso(files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image labelled ``cidata`` holding ``files`` at its root."""
    import pycdlib  # only an apply that creates a seed needs it

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    for name, data in files.items():
        iso.add_fp(io.BytesIO(data), len(data), _ISO_NAMES[name], rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    """The label and the files (by their Rock Ridge names) of an ISO image: how a guest sees a seed."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for child in iso.list_children(rr_path="/"):
            if child is None or child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue()
    finally:
        iso.close()
    return label, files


def build(properties: dict[str, Any]) -> bytes:
    """The seed image of a CloudInit's properties."""
    return build_iso(seed_files(properties))
