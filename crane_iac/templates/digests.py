"""What a base, a playbook and a built template hash to: the manifest records them when a template is built, and a
plan compares a base's digest now with the recorded one (a stale template).

* a directory base (a container root) is fingerprinted by its package database and its ``etc/os-release``: what an
  upgrade, an install or a release change rewrites. Hashing the whole of ``/`` would take minutes on every plan; a
  file changed by hand outside the package manager is not noticed (docs/decisions/templates.md);
* a template (a layer, or an image) by the digest of its content: every path of the layer's tree with its type,
  mode, owner, content, link target or device number (an overlay whiteout is a 0:0 character device) and its
  overlay attributes (an opaque directory), in path order; an image by its bytes;
* a playbook by its text.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

#: the files of a root that change when its packages or its release do
ROOT_FINGERPRINT = ("var/lib/dpkg/status", "etc/os-release")
#: the overlay attributes that change what a layer means (an opaque directory hides the one below it)
_OVERLAY_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_CHUNK = 1 << 20


def _sha256() -> hashlib._Hash:
    return hashlib.sha256()


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = _sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def root_digest(root: Path) -> str:
    """The fingerprint of a directory base: its package database and os-release (a missing one counts as empty)."""
    digest = _sha256()
    for name in ROOT_FINGERPRINT:
        path = root / name
        digest.update(name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


def _entries(top: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """Every path under ``top`` (itself excluded) in a stable order, not following symbolic links."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            path = here / name
            yield str(path.relative_to(top)), path.lstat(), path


def tree_digest(top: Path) -> str:
    """``sha256:<hex>`` of a directory tree: each path, its type, mode, owner and content (see the module)."""
    digest = _sha256()
    for rel, st, path in _entries(top):
        mode = st.st_mode
        digest.update(f"{rel}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0{st.st_uid}:{st.st_gid}\0".encode())
        if stat.S_ISREG(mode):
            digest.update(file_digest(path).encode())
        elif stat.S_ISLNK(mode):
            digest.update(os.readlink(path).encode())
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            digest.update(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}".encode())
        elif stat.S_ISDIR(mode):
            for name in _OVERLAY_XATTRS:
                try:
                    digest.update(name.encode() + b"=" + os.getxattr(path, name, follow_symlinks=False))
                except OSError:
                    pass
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()}"


def packages(root: Path) -> dict[str, str]:
    """The Debian packages installed in ``root`` (name → version), from its package database; {} without one."""
    try:
        text = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return {}
    found = {}
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            name = fields["Package"] if arch in ("", "all", "amd64") else f"{fields['Package']}:{arch}"
            found[name] = fields.get("Version", "")
    return found


def added_packages(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``name=version`` of each package that ``after`` has and ``before`` had not, or had at another version."""
    return sorted(f"{name}={version}" for name, version in after.items() if before.get(name) != version)
