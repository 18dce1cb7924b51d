"""What only the SQLite backend does: file mode, WAL, migrations from the schemas older crane releases wrote, a dead
holder's lock row; and the URL registry. What every backend does is in test_conformance.py."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from crane_iac.errors import StateError
from crane_iac.objects import Outcome, Recorded
from crane_iac.state import backends
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed, mask_url
from crane_iac.state.sql import SCHEMA_VERSION, SqlStateStore


def store(tmp_path: Path) -> SqlStateStore:
    return SqlStateStore(f"sqlite:///{tmp_path}/state.db")


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.commit("demo", [Committed("vm.a", Outcome.CREATE, Recorded("vm.a", "vm", "a", {}))])
    assert stat.S_IMODE(os.stat(tmp_path / "state.db").st_mode) == 0o600
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_a_dead_holders_row_is_cleared_by_its_pid(tmp_path: Path) -> None:
    s = store(tmp_path)
    with sqlite3.connect(tmp_path / "state.db") as db:  # a row left by a process that no longer exists
        db.execute("INSERT INTO locks VALUES ('demo', 'x@h pid 1', ?, 2147483646, 'apply', 'then', 'old-id')",
                   (os.uname().nodename,))
    assert s.lock_info("demo").id == "old-id"  # type: ignore[union-attr]
    got = s.acquire_lock("demo", "apply")
    assert s.lock_info("demo").id == got  # type: ignore[union-attr]
    s.close()


def test_schema_version_is_recorded(tmp_path: Path) -> None:
    assert store(tmp_path).schema_version() == SCHEMA_VERSION


def test_migration_runs_from_an_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE crane_meta SET value = '0' WHERE key = 'schema_version'")
    ran: list[int] = []
    monkeypatch.setitem(__import__("crane_iac.state.sql", fromlist=["MIGRATIONS"]).MIGRATIONS, 1,
                        lambda conn: ran.append(1))
    assert store(tmp_path).schema_version() == SCHEMA_VERSION and ran == [1]


def test_a_version_1_database_gains_lock_ids_and_the_forgotten_table(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:  # the schema crane 0.1's first release wrote
        db.executescript("""
            CREATE TABLE crane_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
            INSERT INTO crane_meta VALUES ('schema_version', '1');
            CREATE TABLE locks (stack VARCHAR PRIMARY KEY, holder VARCHAR NOT NULL, host VARCHAR NOT NULL,
                                pid INTEGER NOT NULL, operation VARCHAR NOT NULL, acquired_at VARCHAR NOT NULL);
        """)
    s = store(tmp_path)
    assert s.schema_version() == SCHEMA_VERSION == 10
    lock_id = s.acquire_lock("demo", "apply")
    assert s.lock_info("demo").id == lock_id  # type: ignore[union-attr]
    assert s.read("demo").forgotten == [] and s.read("demo").settings == {}


#: the schema crane wrote at version 2, as SQLite shows it
V2_SCHEMA = """
CREATE TABLE crane_meta ("key" VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE stacks (name VARCHAR NOT NULL, serial INTEGER NOT NULL, lineage VARCHAR NOT NULL,
                     outputs VARCHAR NOT NULL, PRIMARY KEY (name));
CREATE TABLE resources (stack VARCHAR NOT NULL, address VARCHAR NOT NULL, kind VARCHAR NOT NULL,
                        physical VARCHAR NOT NULL, properties VARCHAR NOT NULL, outputs VARCHAR NOT NULL,
                        dependencies VARCHAR NOT NULL, protect BOOLEAN NOT NULL, PRIMARY KEY (stack, address));
CREATE TABLE intents (stack VARCHAR NOT NULL, address VARCHAR NOT NULL, kind VARCHAR NOT NULL,
                      physical VARCHAR NOT NULL, action VARCHAR NOT NULL, properties VARCHAR NOT NULL,
                      at VARCHAR NOT NULL, PRIMARY KEY (stack, address));
CREATE TABLE history (id INTEGER NOT NULL, stack VARCHAR NOT NULL, serial INTEGER NOT NULL, at VARCHAR NOT NULL,
                      action VARCHAR NOT NULL, address VARCHAR NOT NULL, "before" VARCHAR, "after" VARCHAR,
                      PRIMARY KEY (id));
CREATE INDEX ix_history_stack ON history (stack);
CREATE TABLE locks (stack VARCHAR NOT NULL, holder VARCHAR NOT NULL, host VARCHAR NOT NULL, pid INTEGER NOT NULL,
                    operation VARCHAR NOT NULL, acquired_at VARCHAR NOT NULL, lock_id VARCHAR NOT NULL,
                    PRIMARY KEY (stack));
CREATE TABLE forgotten (stack VARCHAR NOT NULL, kind VARCHAR NOT NULL, physical VARCHAR NOT NULL,
                        address VARCHAR NOT NULL, properties VARCHAR NOT NULL, at VARCHAR NOT NULL,
                        PRIMARY KEY (stack, kind, physical));
INSERT INTO crane_meta VALUES ('schema_version', '2');
INSERT INTO stacks VALUES ('demo', 1, 'lin', '{"x": 1}');
INSERT INTO resources VALUES ('demo', 'vm.a', 'vm', 'a', '{"memory_mib": 256}', '{}', '[]', 0);
INSERT INTO history VALUES (1, 'demo', 1, '2025-01-01T00:00:00+00:00', 'create', 'vm.a', NULL, '{"memory_mib": 256}');
"""


def test_a_version_2_database_written_by_crane_0_1_migrates(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(V2_SCHEMA)
    s = store(tmp_path)
    assert s.schema_version() == SCHEMA_VERSION
    state = s.read("demo")
    assert (state.serial, state.lineage, state.outputs) == (1, "lin", {"x": 1})
    assert state.resources["vm.a"] == Recorded("vm.a", "vm", "a", {"memory_mib": 256})
    assert [(h.action, h.by, h.why) for h in s.history("demo")] == [("create", "", "")]
    assert s.set_setting("demo", "size", 2, by="me", why="test") == 2
    s.close()


def test_unknown_backend_is_a_clear_error_that_masks_the_password() -> None:
    with pytest.raises(StateError, match="'redis' is not supported") as raised:
        open_store("redis://user:hunter2@localhost/0")
    assert "hunter2" not in str(raised.value) and "redis://user:***@localhost/0" in str(raised.value)
    assert "postgresql://" in str(raised.value) and "sqlite://" in str(raised.value)


def test_the_registry_maps_schemes_to_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends.BACKENDS["sqlite"] is backends.BACKENDS["postgresql"] is SqlStateStore
    opened: list[str] = []
    monkeypatch.setitem(backends.BACKENDS, "memo", lambda url: opened.append(url) or store(tmp_path))
    open_store("memo://x").close()
    assert opened == ["memo://x"]


def test_masking_a_url() -> None:
    assert mask_url("postgresql://crane:s3cret@db.example/state") == "postgresql://crane:***@db.example/state"
    assert mask_url("postgresql+psycopg://crane@/state?host=/run/pg&password=s3cret") == \
        "postgresql+psycopg://crane@/state?host=/run/pg&password=***"
    assert mask_url("sqlite:////var/lib/crane/state.db") == "sqlite:////var/lib/crane/state.db"


def test_an_unreachable_postgresql_is_a_state_error_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the state database") as raised:
        open_store(f"postgresql://crane:hunter2@/state?host={tmp_path}&connect_timeout=2")
    assert "hunter2" not in str(raised.value) and "crane:***@" in str(raised.value)
