"""``crane template build`` for VMs, on the host crane runs on (as root): the template's disk is a qcow2 overlay
backed by its base (an image file, a volume of a pool, or another VM template's disk), opened without booting it
(templates/images.py), the user's playbook run by ansible-runner in a chroot of its root file system through the
``crane_chroot`` connection plug-in, and the overlay kept with a manifest. A failure leaves nothing behind: no
daemon, no mount, no loop device, no half-built template; a crane killed mid-build leaves a workspace the next
build releases."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crane_iac.templates import digests, images
from crane_iac.templates.build import BuildRequest, Progress, check_build, run_playbook
from crane_iac.templates.library import DISK_IMAGE, Library, TemplateError
from crane_iac.templates.manifest import Base, Manifest, Playbook

#: what a missing base's name says it was meant to be: an image (its error then says so), not a root directory
IMAGE_SUFFIXES = (".qcow2", ".img", ".raw")


def wants_image(library: Library, base: str) -> bool:
    """Whether ``--from base`` names a disk image (a file, ``pool/volume``, or a VM template), not a container root
    (a directory, or a container template)."""
    if base.startswith("/"):
        path = Path(base)
        return path.is_file() or (not path.exists() and path.suffix in IMAGE_SUFFIXES)
    if "/" in base:
        return True
    return library.exists(base) and library.manifest(base).kind == "vm"


def _base(conn: Any, library: Library, ref: str) -> tuple[Base, Path]:
    """What the template is built on (for its manifest) and the image file its disk is backed by."""
    if "/" not in ref:
        return Base("template", ref, library.manifest(ref).content_digest), library.disk(ref)
    if not ref.startswith("/"):
        import libvirt

        pool, _, volume = ref.partition("/")
        try:
            path = Path(conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path())
        except libvirt.libvirtError as exc:
            raise TemplateError(f"base {ref!r}: no volume {volume!r} in pool {pool!r} of {conn.getURI()} "
                                f"({exc.get_error_message()})") from None
    else:
        path = Path(ref)
    images.info(path)  # an image file, or a clear error
    return Base("image", str(path), digests.file_digest(path)), path


def build_image_template(conn: Any, library: Library, request: BuildRequest,
                         progress: Progress = lambda _line: None) -> Manifest:
    """Build ``request.name`` into ``library`` from a disk image (``request.base``); its manifest."""
    name = check_build(conn, library, request, driver="QEMU", uri="qemu:///system",
                       what="a disk image's template is for VMs",
                       mounts="a VM template build mounts the image's file system on this host")
    base, backing = _base(conn, library, request.base)
    backing_info = images.info(backing)
    for released in images.sweep():
        progress(f"template {name}: released what the killed build of {released} left")
    partial = library.directory / f".{name}.partial"
    space = images.Workspace.claim(name, partial)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        disk = partial / DISK_IMAGE
        images.make_overlay(disk, backing, backing_info.format)
        space.expose(disk)
        root = space.mount_root(f"base {request.base}")
        before = digests.packages(root)
        progress(f"template {name}: building on {request.base} in a chroot of its file system at {root}")
        space.mount_api()
        run_playbook(request, {"ansible_connection": "crane_chroot", "crane_chroot_root": str(root)}, progress,
                     scratch=space.top)
        space.release_api()
        added = digests.added_packages(before, digests.packages(root))
        content = digests.tree_digest(root)
        space.release()
        manifest = Manifest(
            name=name, kind="vm", base=base,
            playbook=Playbook(str(request.playbook.resolve()), digests.file_digest(request.playbook)),
            variables=dict(request.variables), packages=added,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            built_by=f"{getpass.getuser()}@{socket.gethostname()}", content_digest=content, public=request.public,
            disk_bytes=backing_info.virtual_size)
        (partial / "manifest.json").write_text(manifest.to_json())
        partial.rename(library.path(name))
        return manifest
    finally:
        with contextlib.suppress(TemplateError):
            space.release()
        shutil.rmtree(partial, ignore_errors=True)
