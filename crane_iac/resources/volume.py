"""Volume: a storage volume in a pool, empty, backed by a base, uploaded from an image file, or copied; or a
directory (``format="dir"``) for containers to keep files in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, InstanceOf, field_validator, model_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Resource
from crane_iac.resources.pool import StoragePool, pool_reference


class Volume(Resource):
    """A disk in ``pool`` (a ``StoragePool`` of the stack, or the name of a pool the host has).

    Where its content comes from (at most one of):

    * nothing: an empty volume of ``capacity_gib``;
    * ``base``: another Volume or an image path on the hypervisor host that the new volume is backed by (copy on
      write: the base must stay);
    * ``source``: an image file (qcow2 or raw) **on the machine running crane**, uploaded through libvirt's
      connection (``virStorageVolUpload``), so it works against remote hosts too. The volume takes the image's
      format (``format``, when given, must match it: crane does not convert) and is at least the image's virtual
      size: ``capacity_gib`` may be left out, and when given must not be smaller (the volume is grown to it);
    * ``source`` may instead be a ``Snapshot`` (resources/snapshot.py): the volume is a full copy of it, in its
      format (a directory snapshot restores into a directory volume: give ``format="dir"``);
    * ``template``: the name of a VM template of the host's template library (``crane template build NAME --from
      IMAGE.qcow2 --playbook FILE``, docs/guides/templates.md): a qcow2 volume backed by the template's disk (copy
      on write, as with ``base``), of the template's size unless ``capacity_gib`` asks for more;
    * ``clone``: another Volume copied in full (``virStorageVolCreateXMLFrom``; independent of it afterwards), in
      its format unless ``format`` asks for another (libvirt converts), at least its size.

    Changing ``source`` or ``clone`` (the path, or which volume) replaces the volume; crane does not notice a
    changed *file* at the same path (rename the file, or ``crane apply --replace`` the volume). libvirt cannot say
    what a volume was made from: crane keeps ``source`` and ``clone`` in its state.

    ``format="dir"`` makes a directory in the pool (mode 0755) instead of a disk image, for ``Container(mounts=...)``:
    it has no capacity (leave ``capacity_gib`` out) and no base, source or clone. Destroying it removes what is in it
    when crane runs on the host itself; on a remote host the directory must be emptied first.
    """

    kind = "volume"
    kind_rule = Kind("volume", scope="pool")

    capacity_gib: int | None = Field(default=None, ge=1, le=65536)
    pool: InstanceOf[StoragePool] | str = "default"
    format: Literal["qcow2", "raw", "dir"] | None = None
    base: InstanceOf[Volume] | str | None = None
    source: str | InstanceOf[Path] | InstanceOf[Resource] | None = None
    clone: InstanceOf[Volume] | None = None
    #: a VM template of the host's library the volume is backed by (None: none)
    template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

    _pool = field_validator("pool")(classmethod(lambda _cls, value: pool_reference(value)))

    @field_validator("base")
    @classmethod
    def _base(cls, value: Volume | str | None) -> Volume | str | None:
        if isinstance(value, str) and not value.startswith("/"):
            raise ValueError(f"base image {value!r} must be an absolute path or a Volume")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | Path | Resource | None) -> str | Resource | None:
        if isinstance(value, Resource):
            # a Snapshot (resources/snapshot.py, which imports this module: known here by its kind)
            if value.kind != "snapshot":
                raise ValueError(f"source {value.address} is a {value.kind}: give an image path or a Snapshot "
                                 "(to copy a volume, use clone=)")
            return value
        if value is None:
            return None
        text = str(value)
        if not text.startswith("/"):
            raise ValueError(f"source image {text!r} must be an absolute path (e.g. str(Path(__file__).parent / …))")
        return text

    @model_validator(mode="after")
    def _content(self) -> Volume:
        given = [name for name in ("base", "source", "clone", "template") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of base, source, clone and template, not {' and '.join(given)}")
        if self.template is not None:
            if self.format not in (None, "qcow2"):
                raise ValueError(f"a volume on template {self.template!r} is a qcow2 overlay of its disk: drop "
                                 f"format={self.format!r}")
            return self
        snapshot: Any = self.source if isinstance(self.source, Resource) else None
        if snapshot is not None:
            if self.format is not None and snapshot.format is not None and self.format != snapshot.format \
                    and "dir" in (self.format, snapshot.format):
                raise ValueError(f"{snapshot.address} is a copy of a {snapshot.format} volume: it restores into "
                                 f"format={snapshot.format!r}, not {self.format!r}")
            if self.format == "dir" or snapshot.format == "dir":
                if self.capacity_gib is not None:
                    raise ValueError("a directory volume (format='dir') has no capacity: drop capacity_gib")
                return self
        if self.format == "dir":
            if given:
                raise ValueError(f"a directory volume (format='dir') is made empty: drop {' and '.join(given)}")
            if self.capacity_gib is not None:
                raise ValueError("a directory volume (format='dir') has no capacity: drop capacity_gib")
            return self
        if self.capacity_gib is None and not (self.source or self.clone):
            raise ValueError("capacity_gib is required (it may be left out only with source=, clone= or template=)")
        clone = self.clone
        if clone is not None and self.capacity_gib is not None and clone.capacity_gib is not None \
                and self.capacity_gib < clone.capacity_gib:
            raise ValueError(f"capacity_gib ({self.capacity_gib}) is below that of {clone.address} "
                             f"({clone.capacity_gib}), which it copies")
        return self

    @property
    def pool_name(self) -> str:
        """The pool's name on the hypervisor."""
        pool = self.pool
        return pool.physical_name if isinstance(pool, StoragePool) else pool

    @property
    def reference(self) -> str:
        """``pool/volume``: how domains and other volumes name this one."""
        return f"{self.pool_name}/{self.physical_name}"

    def properties(self) -> dict[str, Any]:
        base, clone = self.base, self.clone
        copied = self.source is not None or clone is not None
        snapshot: Any = self.source if isinstance(self.source, Resource) else None
        if snapshot is not None:
            # the key only a restored volume has (as state keeps it: libvirt cannot say what a volume was made from)
            return {"capacity_gib": self.capacity_gib, "pool": self.pool_name,
                    "format": self.format or snapshot.format, "base": None, "source": None, "clone": None,
                    "snapshot": snapshot.reference}
        if self.template is not None:
            # the key only such a volume has (read back from its backing file's place in the library)
            return {"capacity_gib": self.capacity_gib, "pool": self.pool_name, "format": "qcow2", "base": None,
                    "source": None, "clone": None, "template": self.template}
        return {
            # None (with source or clone): the size of what it is made from
            "capacity_gib": self.capacity_gib,
            "pool": self.pool_name,
            # None (with source or clone): the format of what it is made from
            "format": self.format or (None if copied else "qcow2"),
            "base": base.reference if isinstance(base, Volume) else base,
            "source": self.source if isinstance(self.source, str) else None,
            "clone": clone.reference if clone is not None else None,
        }

