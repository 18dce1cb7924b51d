"""SshKey: the key pair crane configures a stack's hosts with; the private key stays in a file, never in state."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import field_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Output, Resource


class SshKey(Resource):
    """An ed25519 key pair. With ``path=None`` crane generates it into the project's ``.crane/`` (mode 0600) and
    deletes it with the resource; with ``path`` it uses that existing private key and never deletes it. State keeps
    the public key and the path, not the key."""

    kind = "ssh_key"
    kind_rule: ClassVar[Kind | None] = Kind("ssh_key", provider="ansible")

    path: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("/", "~")):
            raise ValueError(f"{value!r} must be an absolute path (or start with ~) to a private key")
        return value

    @property
    def public_key(self) -> Output:
        """The public key (``ssh-ed25519 AAAA… comment``), known once the key exists."""
        return Output(self, "public_key")

    def properties(self) -> dict[str, Any]:
        return {"path": self.path, "type": "ed25519"}
