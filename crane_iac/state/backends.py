"""Choose the state backend from the URL in crane.toml."""

from __future__ import annotations

from crane_iac.errors import StateError
from crane_iac.state.base import StateStore
from crane_iac.state.sql import SqlStateStore


def open_store(url: str) -> StateStore:
    """The backend for ``url``: ``sqlite:///PATH`` now; a PostgreSQL URL will select the same SQL store."""
    if url.startswith("sqlite:///"):
        return SqlStateStore(url)
    raise StateError(f"state backend {url.split(':', 1)[0]!r} is not supported; use sqlite:///PATH")
