"""Kind ``ssh_key``: the key pair crane reaches an app domain's hosts with. crane generates one into its key directory
(``ssh-keygen``), or uses the user's own private key at ``path`` and keeps only its public half beside its own.
The private key stays in its file: properties, outputs, state and messages carry only its path."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner

KIND = "ssh_key"
#: the key types ssh-keygen makes and ``type`` may name
TYPES = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ecdsa-sha2-nistp256": "ecdsa", "ecdsa-sha2-nistp384": "ecdsa",
         "ecdsa-sha2-nistp521": "ecdsa"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMENT = "crane:"


def comment(owner: Owner) -> str:
    """The public key's comment, which says whose it is (``read_all`` reads the owner back from it)."""
    return f"{_COMMENT}{owner.stack}/{owner.address}"


def owner_of(public_key: str) -> Owner | None:
    """The owner a public key line's comment names, or None when crane did not write it."""
    parts = public_key.split(maxsplit=2)
    if len(parts) < 3 or not parts[2].startswith(_COMMENT):
        return None
    stack, _, address = parts[2][len(_COMMENT):].strip().partition("/")
    return Owner(stack, address) if stack and address else None


def key_type(public_key: str) -> str:
    """``ed25519``/``rsa``/``ecdsa`` from a public key line (its algorithm, the first word)."""
    algorithm = public_key.split(maxsplit=1)[0] if public_key.strip() else ""
    return TYPES.get(algorithm, algorithm)


def public_half(private_key: Path) -> str:
    """The public key of a private key file (``ssh-keygen -y``), without a comment; a missing, unreadable or
    passphrase-protected file is a ``ProviderError`` naming it (and never quoting it)."""
    if not private_key.is_file():
        raise ProviderError(f"ssh key {private_key}: no such file; give the path of an existing private key, or "
                            f"path=None for one crane generates")
    if not os.access(private_key, os.R_OK):
        raise ProviderError(f"ssh key {private_key}: not readable by this user (uid {os.geteuid()})")
    done = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(private_key)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    line = done.stdout.strip()
    if done.returncode != 0 or not line.startswith(tuple(TYPES)):
        why = "it is protected by a passphrase (crane runs ssh unattended: use a key without one)" \
            if "passphrase" in done.stderr else "not a private key ssh-keygen can read"
        raise ProviderError(f"ssh key {private_key}: {why}")
    return " ".join(line.split()[:2])


class SshKeys:
    """The key pairs in one directory: ``<name>`` and ``<name>.pub`` that crane generated, or ``<name>.pub`` and
    ``<name>.path`` (the user's private key's path) for a key crane uses but did not make."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir

    def _dir(self) -> Path:
        self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key_dir.chmod(0o700)
        return self.key_dir

    def _files(self, physical: str) -> tuple[Path, Path, Path]:
        if not _NAME.match(physical):
            raise ProviderError(f"ssh key {physical!r}: a key's name must be letters, digits, '.', '_' or '-' (it "
                                f"names its file in {self.key_dir})")
        return self.key_dir / physical, self.key_dir / f"{physical}.pub", self.key_dir / f"{physical}.path"

    def private_key_path(self, physical: str) -> Path:
        """Where the private key of key ``physical`` is: crane's own file, or the user's it recorded."""
        private, _, pointer = self._files(physical)
        if pointer.is_file():
            return Path(pointer.read_text().strip())
        if private.is_file():
            return private
        raise ProviderError(f"ssh key {physical!r} is not in {self.key_dir}: apply its ssh_key resource first")

    def problems(self, properties: dict[str, Any]) -> list[str]:
        """A user's key that cannot be used: missing, unreadable, of another type than declared, or open to others
        (ssh refuses such a key)."""
        path = properties.get("path")
        if path is None:
            return [] if properties.get("type", "ed25519") in set(TYPES.values()) else \
                [f"type {properties.get('type')!r}: crane generates one of {', '.join(sorted(set(TYPES.values())))}"]
        try:
            public = public_half(Path(path))
        except ProviderError as exc:
            return [str(exc)]
        problems = []
        if key_type(public) != properties.get("type", "ed25519"):
            problems.append(f"ssh key {path} is an {key_type(public)} key, not {properties.get('type')}: "
                            f"set type={key_type(public)!r}")
        mode = stat.S_IMODE(Path(path).stat().st_mode)
        if mode & 0o077:
            problems.append(f"ssh key {path} has mode {mode:04o}, and ssh refuses a private key others can read: "
                            f"chmod 600 {path}")
        return problems

    def create(self, physical: str, properties: dict[str, Any], owner: Owner) -> Live:
        private, public, pointer = self._files(physical)
        self._dir()
        for stale in self.key_dir.glob(f".{physical}.tmp*"):
            stale.unlink()
        path = properties.get("path")
        if path is None:
            temp = self.key_dir / f".{physical}.tmp{os.getpid()}"
            done = subprocess.run(["ssh-keygen", "-q", "-t", properties.get("type", "ed25519"), "-N", "",
                                   "-C", comment(owner), "-f", str(temp)],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
            if done.returncode != 0:
                raise ProviderError(f"ssh-keygen could not make key {physical!r} in {self.key_dir}: "
                                    f"{done.stderr.strip()}")
            temp.chmod(0o600)
            pointer.unlink(missing_ok=True)
            os.replace(temp, private)
            os.replace(f"{temp}.pub", public)  # the .pub last: read_all lists a key by it
        else:
            line = f"{public_half(Path(path))} {comment(owner)}\n"
            temp = self.key_dir / f".{physical}.tmp{os.getpid()}"
            temp.write_text(f"{path}\n")
            os.replace(temp, pointer)
            private.unlink(missing_ok=True)
            temp.write_text(line)
            os.replace(temp, public)
        live = self._read(physical)
        assert live is not None, "a key just written is there"
        return live

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        raise ProviderError(f"ssh key {physical!r} cannot change in place; crane replaces it")

    def read(self, physical: str, properties: dict[str, Any]) -> Live | None:
        return self._read(physical)

    def _read(self, physical: str) -> Live | None:
        """The key as its files say, or None when its private half (crane's file or the user's) is gone."""
        private, public, pointer = self._files(physical)
        try:
            line = public.read_text().strip()
            path = pointer.read_text().strip() if pointer.is_file() else None
        except OSError:
            return None
        if not (Path(path) if path else private).is_file():
            return None
        owner = owner_of(line)
        return Live(KIND, physical, {"path": path, "type": key_type(line)},
                    {"public_key": line, "private_key_path": path or str(private)},
                    owner.stack if owner else None, owner.address if owner else None)

    def delete(self, physical: str, properties: dict[str, Any]) -> None:
        """Removes the files crane wrote (never the user's own private key)."""
        for file in self._files(physical):
            file.unlink(missing_ok=True)

    def read_all(self) -> list[Live]:
        if not self.key_dir.is_dir():
            return []
        lives = (self._read(pub.name[:-len(".pub")]) for pub in sorted(self.key_dir.glob("*.pub"))
                 if _NAME.match(pub.name[:-len(".pub")]))
        return [live for live in lives if live is not None]
