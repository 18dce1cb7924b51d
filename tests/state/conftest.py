"""State fixtures: a real PostgreSQL server per session, a fresh database per test, and a store of each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore
from tests.state.postgresql_server import PostgresServer

#: every state backend the conformance suite runs against
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def postgresql_database(postgresql_server: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database on the session's server, dropped after the test."""
    url = postgresql_server.create_database()
    try:
        yield url
    finally:
        postgresql_server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state URL of each backend (PostgreSQL is started only for its own runs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("postgresql_database"))


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = open_store(state_url)
    try:
        yield s
    finally:
        s.close()
