"""A template library written by hand, as a build would leave it (manifest.json per template), for the tests that
need no build: the sandbox cannot run a playbook."""

from __future__ import annotations

from pathlib import Path

from crane_iac.templates import digests
from crane_iac.templates.library import Library
from crane_iac.templates.manifest import Base, Manifest, Playbook


def fake_root(where: Path, status: str = "Package: base-files\nStatus: install ok installed\nVersion: 12\n") -> Path:
    """A directory base with a package database and an os-release."""
    (where / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (where / "etc").mkdir(parents=True, exist_ok=True)
    (where / "var/lib/dpkg/status").write_text(status)
    (where / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    return where


def add_template(library: Library, name: str, base_kind: str, base_ref: str, *, content: str = "sha256:c0") -> Manifest:
    """Record template ``name`` on a ``dir`` base (its digest now) or on another template (its content digest)."""
    digest = (digests.root_digest(Path(base_ref)) if base_kind == "dir"
              else library.manifest(base_ref).content_digest)
    manifest = Manifest(name=name, kind="container", base=Base(base_kind, base_ref, digest),  # type: ignore[arg-type]
                        playbook=Playbook("/p/site.yml", "sha256:p"), variables={"v": "1"},
                        packages=["hello=2.10-3"], built_at="2025-01-01T00:00:00+00:00", built_by="root@test",
                        content_digest=content)
    library.path(name).mkdir(parents=True)
    library.save(manifest)
    return manifest
