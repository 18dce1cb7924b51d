"""Choose the state backend from a URL's scheme through one registry, as SQLAlchemy chooses a dialect.

    sqlite:///PATH                                   the default: a file beside the project
    postgresql://USER@HOST/DATABASE                  PostgreSQL through psycopg 3 (also postgresql+psycopg://)
    postgresql+psycopg://USER@/DATABASE?host=/run/postgresql

Every backend registered here passes one conformance suite (tests/state/test_conformance.py).
"""

from __future__ import annotations

from collections.abc import Callable

from crane_iac.errors import StateError
from crane_iac.extras import require
from crane_iac.state.base import StateStore, mask_url
from crane_iac.state.sql import SqlStateStore

#: URL scheme → what opens a store for such a URL
BACKENDS: dict[str, Callable[[str], StateStore]] = {
    "sqlite": SqlStateStore,
    "postgresql": SqlStateStore,
    "postgresql+psycopg": SqlStateStore,
}


def register_backend(scheme: str, opener: Callable[[str], StateStore]) -> None:
    """Serve URLs of ``scheme`` (``"etcd"``) with ``opener``; a plug-in calls this once at import."""
    BACKENDS[scheme.lower()] = opener


def open_store(url: str) -> StateStore:
    """The state store for ``url``; an unknown scheme is a StateError listing the known ones."""
    scheme, sep, _ = url.partition("://")
    opener = BACKENDS.get(scheme.lower()) if sep else None
    if opener is None:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise StateError(f"state backend {scheme if sep else mask_url(url)!r} is not supported (state URL "
                         f"{mask_url(url)}); use one of {known}, e.g. sqlite:///PATH")
    if scheme.lower().startswith("postgresql"):
        require("psycopg", f"PostgreSQL state ({mask_url(url)})")
    return opener(url)
