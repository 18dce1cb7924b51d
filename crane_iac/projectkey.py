"""The project's key, and the keys crane derives from it: the secret that proves a web server's agent is crane's.

``<project>/.crane/project.key`` holds 32 random bytes (hex), mode 0600, made on first need: by the first
configuration run that is given a derived key, or the first period of ``crane autoscale`` that reads the agents,
whichever comes first (an atomic create-if-absent: two makers agree on one key). A key for a purpose is
HMAC-SHA256(project key, ``name``): ``agent_key_name(domain)`` names an app domain's agents' key, so each domain's
servers prove themselves with a key of their own, and a server of one domain cannot speak for another's. Neither
key is ever in state, plans or logs; the project key never leaves this machine, and a derived key reaches only the
hosts it is for (decision: docs/decisions/agent-trust.md). Several ``crane autoscale`` replicas on several machines
need the same file: copy it with the rest of ``.crane``. Deleting it makes a new one: every domain's agents need
their configuration run again to be believed (``crane apply --replace`` of their web runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from crane_iac.errors import CraneError

#: the key's file in the project's crane directory
FILE = "project.key"
_BYTES = 32


def agent_key_name(domain: str) -> str:
    """The name of the key an app domain's agents MAC their samples with (``domain`` its address)."""
    return f"crane agent key\0{domain}"


def project_key(crane_dir: Path) -> bytes:
    """The project's key, made (mode 0600) when there is none; ``CraneError`` when it cannot be read or made, or is
    not a key crane wrote."""
    path = crane_dir / FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = _make(path)
    except OSError as exc:
        raise CraneError(f"cannot read the project's key {path}: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != _BYTES:
        raise CraneError(f"{path} is not a key crane made ({_BYTES} bytes in hex); remove it to make a new one "
                         "(then apply again: the agents need the new key)")
    return key


def derived_key(crane_dir: Path, name: str) -> bytes:
    """HMAC-SHA256 of ``name`` under the project's key."""
    return hmac.new(project_key(crane_dir), name.encode(), hashlib.sha256).digest()


def _make(path: Path) -> str:
    """A new key in ``path``, unless another process made one first (then that one)."""
    text = secrets.token_hex(_BYTES) + "\n"
    tmp = path.with_name(f".{FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if another maker won: theirs is the key
        except FileExistsError:
            return path.read_text()
    except OSError as exc:
        raise CraneError(f"cannot make the project's key {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return text
