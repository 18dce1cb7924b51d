"""The template library: a directory on the host (the storage pool ``crane-templates``, made at ``.crane/templates``
of the project when the host has none) holding one directory per template: ``manifest.json`` and its content
(``layer.img``, an ext4 image whose ``upper/`` is the tree a container template adds over its base; or
``disk.qcow2``, a VM's image backed by its base). Snapshots (resources/snapshot.py) are volumes of the same pool:
anything without a manifest is not a template."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crane_iac.errors import CraneError
from crane_iac.templates import digests
from crane_iac.templates.manifest import Manifest

#: the storage pool that holds the library on a libvirt host (qemu:///system and lxc:///system share it)
LIBRARY_POOL = "crane-templates"
#: where crane makes the library when the host has none: under the project's .crane directory
DEFAULT_DIR = "templates"
MANIFEST = "manifest.json"
#: a container template's content: an ext4 image holding ``upper/`` (the layer) and, while it builds, ``work/``
LAYER_IMAGE = "layer.img"
#: a VM template's content: a qcow2 image backed by its base image
DISK_IMAGE = "disk.qcow2"
#: a template's name: a volume name libvirt and a path both accept, and no ``.``-prefixed build directory
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class TemplateError(CraneError):
    """A template that is missing, in use, stale in a way that stops the command, or a build that failed."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateError(f"template name {name!r}: use letters, digits, '-' and '_' (at most 63, starting with a "
                            "letter or digit)")
    return name


@dataclass(frozen=True)
class Stale:
    """Why a template is stale: which template in its lineage was built on a base that has changed since."""

    template: str
    base: str

    def __str__(self) -> str:
        return (f"template {self.template!r} is stale: its base {self.base!r} changed since it was built "
                f"(crane template show {self.template} names the recorded digest; rebuild it)")


class Library:
    """The templates under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / MANIFEST).is_file()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if (p / MANIFEST).is_file() and NAME.match(p.name))

    def manifest(self, name: str) -> Manifest:
        """The template's manifest; a TemplateError naming the library and its templates when there is none."""
        path = self.path(name) / MANIFEST
        try:
            text = path.read_text()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise TemplateError(f"no template {name!r} in the library {self.directory} (templates: {known}); build "
                                f"it with `crane template build {name} --from BASE --playbook FILE`") from None
        try:
            return Manifest.from_json(text, str(path))
        except ValueError as exc:
            raise TemplateError(str(exc)) from None

    def save(self, manifest: Manifest) -> None:
        (self.path(manifest.name) / MANIFEST).write_text(manifest.to_json())

    def lineage(self, name: str) -> list[Manifest]:
        """The template and the templates it was built on, itself first."""
        chain = [self.manifest(name)]
        while chain[-1].base.kind == "template":
            parent = chain[-1].base.ref
            if any(m.name == parent for m in chain):
                raise TemplateError(f"template {name!r}: its lineage loops through {parent!r}")
            chain.append(self.manifest(parent))
        return chain

    def layers(self, name: str) -> tuple[list[Path], str]:
        """A container template's layer images, itself first, and the directory at the bottom of its lineage."""
        chain = self.lineage(name)
        wrong = [m.name for m in chain if m.kind != "container"]
        if wrong:
            raise TemplateError(f"template {wrong[0]!r} is a VM's disk image, not a container's layer")
        return [self.path(m.name) / LAYER_IMAGE for m in chain], chain[-1].base.ref

    def disk(self, name: str) -> Path:
        """A VM template's disk image (qcow2, backed by its base's); a TemplateError for a container template."""
        manifest = self.manifest(name)
        if manifest.kind != "vm":
            raise TemplateError(f"template {name!r} is a container's layer, not a VM's disk image (a Volume's "
                                "template is one built on a disk image: crane template build --from IMAGE.qcow2)")
        return self.path(name) / DISK_IMAGE

    def children(self, name: str) -> list[str]:
        """The templates built directly on ``name``."""
        return [other for other in self.names() if other != name
                and (m := self.manifest(other)).base.kind == "template" and m.base.ref == name]

    def stale(self, name: str, digest_of: Callable[[str, str], str] | None = None) -> Stale | None:
        """The first template of the lineage whose base's digest now differs from the one its manifest recorded;
        None when none does. ``digest_of(kind, ref)`` computes a base's digest now (a test passes its own)."""
        now = digest_of or base_digest
        for manifest in self.lineage(name):
            if manifest.base.kind == "template":
                current = self.manifest(manifest.base.ref).content_digest
            else:
                try:
                    current = now(manifest.base.kind, manifest.base.ref)
                except OSError:
                    current = "missing"
            if current != manifest.base.digest:
                return Stale(manifest.name, manifest.base.ref)
        return None

    def remove(self, name: str) -> None:
        """Remove a template; one another template is built on is refused (remove that one first)."""
        self.manifest(name)
        children = self.children(name)
        if children:
            raise TemplateError(f"template {name!r} is the base of {', '.join(children)}; remove "
                                f"{'it' if len(children) == 1 else 'them'} first")
        shutil.rmtree(self.path(name))


def base_digest(kind: str, ref: str) -> str:
    """A ``dir`` or ``image`` base's digest now (a template's is its manifest's ``content_digest``)."""
    if kind == "dir":
        if not Path(ref).is_dir():
            raise FileNotFoundError(ref)
        return digests.root_digest(Path(ref))
    return digests.file_digest(Path(ref))
