"""The mounts that put templates under containers, on the host crane runs on (as root).

Why loop-mounted images and not plain directories: overlayfs refuses layers that overlap, and a container's usual
base is ``/``, which holds every directory of its file system, the library's too ("overlapping lowerdir path").
A layer on a file system of its own (an ext4 image, loop-mounted) overlaps nothing, so each container template is
an ext4 image holding ``upper/``: the tree its build added, whiteouts and opaque directories included.

* a template's image is mounted read-only once per host at ``/run/crane/layers/<template>`` and shared by every
  container using it;
* a container's root is a read-only overlay at ``/run/crane/roots/<container>``: its templates' ``upper/`` over
  their base, which libvirt then passes through read-only as it passes a plain root;
* a build mounts its image read-write at ``/run/crane/builds/<template>/layer`` and a writable overlay (upper and
  work directories in the image) at ``/run/crane/builds/<template>/root``.

Everything under /run goes with a reboot, as the containers do; the next start mounts it again.

The mounts are made in the mount namespace of the libvirt daemon that runs the containers (its LXC controller
starts them from there), which is the host's own on most machines but may be one of its own (tests/real's libvirtd
runs in a private one): ``nsenter --mount`` into it when it differs from crane's, and crane reads what is mounted
through ``/proc/<daemon>/root``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from crane_iac.errors import ProviderError

RUN_DIR = Path("/run/crane")
LAYERS = RUN_DIR / "layers"
ROOTS = RUN_DIR / "roots"
BUILDS = RUN_DIR / "builds"
#: held while a mount is looked for and made or unmade: apply starts a stack's containers in parallel, and the
#: nodes of one cluster share their template's layer (found unmounted by two of them, it was mounted twice and the
#: second mount failed). One crane process's threads only: two cranes applying on one template at once may race.
_MOUNTING = threading.RLock()
P = ParamSpec("P")
T = TypeVar("T")


#: the daemons whose mount namespace runs containers: the LXC driver's own, or the monolithic one
_DAEMONS = ("virtlxcd", "libvirtd")


@functools.cache
def _daemon() -> int | None:
    """The PID of the libvirt daemon running containers when its mount namespace is not crane's; None when it is
    crane's, or no daemon runs here."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm in _DAEMONS:
                    found.setdefault(comm, int(entry.name))
    pid = next((found[name] for name in _DAEMONS if name in found), None)
    if pid is None:
        return None
    try:
        same = os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return None
    return None if same else pid


def forget_daemon() -> None:
    """Look for the daemon again at the next mount (a test that restarts libvirtd)."""
    _daemon.cache_clear()


def view(path: Path) -> Path:
    """``path`` as the daemon's mount namespace has it, seen from crane's."""
    pid = _daemon()
    return Path(f"/proc/{pid}/root{path}") if pid is not None else path


def _mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, file system type, super options) of each mount of the daemon's mount namespace."""
    found = []
    pid = _daemon()
    for line in Path(f"/proc/{pid or 'self'}/mountinfo").read_text().splitlines():
        mine, _, theirs = line.partition(" - ")
        point = mine.split()[4].encode().decode("unicode_escape")
        fstype, _source, options = [*theirs.split(), "", "", ""][:3]
        found.append((point, fstype, options))
    return found


def is_mounted(path: Path) -> bool:
    return any(point == str(path) for point, _, _ in _mountinfo())


def _run(*argv: str) -> None:
    pid = _daemon()
    entered = ["nsenter", "--target", str(pid), "--mount", "--", *argv] if pid is not None else list(argv)
    done = subprocess.run(entered, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ProviderError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")


def _serialised(function: Callable[P, T]) -> Callable[P, T]:
    """``function`` run holding ``_MOUNTING``."""
    @functools.wraps(function)
    def holding(*args: P.args, **kwargs: P.kwargs) -> T:
        with _MOUNTING:
            return function(*args, **kwargs)
    return holding


def make_image(image: Path, size_gib: int) -> None:
    """A sparse ext4 image of ``size_gib`` (what it holds takes space, not its size)."""
    with open(image, "wb") as handle:
        handle.truncate(size_gib * 1024**3)
    _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "crane-layer", str(image))


@_serialised
def mount_layer(image: Path, name: str) -> Path:
    """The template's image mounted read-only at ``/run/crane/layers/<name>`` (once: later calls find it)."""
    where = LAYERS / name
    if not is_mounted(where):
        view(where).mkdir(parents=True, exist_ok=True)
        _run("mount", "-o", "loop,ro", str(image), str(where))
    return where


@_serialised
def container_root(physical: str, images: list[Path], base: str) -> Path:
    """The read-only overlay a container runs on: each template's layer (its own first) over ``base``."""
    where = ROOTS / physical
    lowers = [str(mount_layer(image, image.parent.name) / "upper") for image in images]
    if not is_mounted(where):
        view(where).mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={':'.join([*lowers, base])}", str(where))
    return where


@_serialised
def release_root(physical: str) -> None:
    """Unmount a container's root, and the layers no other root uses."""
    where = ROOTS / physical
    if is_mounted(where):
        _run("umount", str(where))
    with contextlib.suppress(OSError):
        view(where).rmdir()
    release_unused_layers()


@_serialised
def release_unused_layers() -> None:
    """Unmount each layer that no overlay names any more."""
    mounts = _mountinfo()
    overlays = " ".join(options for _, fstype, options in mounts if fstype == "overlay")
    for point, _, _ in mounts:
        if point.startswith(f"{LAYERS}/") and f"{point}/upper" not in overlays:
            _run("umount", point)
            with contextlib.suppress(OSError):
                view(Path(point)).rmdir()


def build_root(name: str, image: Path, parents: list[Path], base: str) -> Path:
    """A writable overlay for building template ``name``: its image (read-write) holds the upper and work
    directories, over its parents' layers and ``base``."""
    top = BUILDS / name
    layer, root = top / "layer", top / "root"
    for path in (layer, root):
        view(path).mkdir(parents=True, exist_ok=True)
    if not is_mounted(layer):
        _run("mount", "-o", "loop", str(image), str(layer))
    _run("mkdir", "-p", f"{layer}/upper", f"{layer}/work")
    lowers = [str(mount_layer(p, p.parent.name) / "upper") for p in parents]
    if not is_mounted(root):
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={':'.join([*lowers, base])},upperdir={layer}/upper,workdir={layer}/work", str(root))
    return root


def release_build(name: str) -> None:
    """Unmount a build's overlay and image (the work directory, overlay's scratch space, emptied first)."""
    top = BUILDS / name
    if is_mounted(top / "root"):
        _run("umount", str(top / "root"))
    if is_mounted(top / "layer"):
        _run("rm", "-rf", str(top / "layer" / "work"))
        _run("umount", str(top / "layer"))
    for path in (top / "root", top / "layer", top):
        with contextlib.suppress(OSError):
            view(path).rmdir()
    release_unused_layers()
