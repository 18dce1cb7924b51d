"""A template's manifest: what it was built from and how, so that it can be built again and checked against its
base (Packer's and virt-builder's habit: the recipe beside the artefact). Pure: no I/O but the JSON text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: the manifest's own format version: a reader refuses a newer one rather than misread it
MANIFEST_VERSION = 1

#: ``dir``: a directory on the host (a container root, ``/`` being the host's own); ``template``: another template
#: of the library; ``image``: a disk image file (a VM's)
BaseKind = Literal["dir", "template", "image"]


@dataclass(frozen=True)
class Base:
    """What a template was built on, and that base's digest when the build started."""

    kind: BaseKind
    #: the directory, the template's name, or the image's path
    ref: str
    digest: str


@dataclass(frozen=True)
class Playbook:
    """The playbook a build ran: where it was, and the digest of its text."""

    path: str
    digest: str


@dataclass(frozen=True)
class Manifest:
    """One template: ``kind`` is what uses it (``container``: a layer over a root; ``vm``: a disk image)."""

    name: str
    kind: Literal["container", "vm"]
    base: Base
    playbook: Playbook
    variables: dict[str, str] = field(default_factory=dict)
    #: Debian packages the build installed (name=version), from the package database before and after; empty where
    #: the base has none
    packages: list[str] = field(default_factory=list)
    built_at: str = ""
    built_by: str = ""
    #: the digest of what the build made (the layer's tree, or the image's bytes): templates/digests.py
    content_digest: str = ""
    #: whether other projects on the host may build on it (listed for them); a template is the host's either way
    public: bool = False
    #: a VM template's virtual disk size in bytes (its base's): what a volume made from it is at least; 0 for a
    #: container template
    disk_bytes: int = 0
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """The manifest in ``text``; ValueError naming ``where`` when it is not one this crane reads."""
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("version", 0) > MANIFEST_VERSION:
                raise ValueError(f"manifest version {data['version']} is newer than this crane reads "
                                 f"({MANIFEST_VERSION})")
            return cls(name=data["name"], kind=data["kind"], base=Base(**data["base"]),
                       playbook=Playbook(**data["playbook"]), variables=dict(data.get("variables", {})),
                       packages=list(data.get("packages", [])), built_at=data.get("built_at", ""),
                       built_by=data.get("built_by", ""), content_digest=data.get("content_digest", ""),
                       public=bool(data.get("public", False)), disk_bytes=int(data.get("disk_bytes", 0)),
                       version=int(data.get("version", MANIFEST_VERSION)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a template manifest ({exc})") from None
