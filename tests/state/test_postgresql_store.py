"""What only the PostgreSQL backend does: advisory locks that die with their holder's connection, breaking a live
holder's lock by ending its session, many runs creating the schema of a new database at once, masked passwords."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from crane_iac.errors import StateError
from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore
from crane_iac.state.sql import SCHEMA_VERSION
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from crane_iac.state.backends import open_store;"
        "s = open_store(sys.argv[2]); lock = s.acquire_lock('demo', 'apply'); print(lock, flush=True);"
        "sys.stdin.readline(); s.release_lock('demo', lock); s.close(); print('released', flush=True)")


@pytest.fixture
def pg_store(postgresql_database: str) -> Iterator[StateStore]:
    s = open_store(postgresql_database)
    yield s
    s.close()


def lock_rows(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(sqlalchemy.text("SELECT lock_id FROM locks"))]
    engine.dispose()
    return rows


def test_a_sigkilled_holders_lock_goes_with_its_connection(postgresql_database: str, pg_store: StateStore) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO), postgresql_database], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    lock_id = holder.stdout.readline().strip()
    info = pg_store.lock_info("demo")
    assert info is not None and info.id == lock_id and info.pid == holder.pid
    holder.kill()
    holder.wait()
    holder.stdin.close()
    holder.stdout.close()
    wait_until(lambda: pg_store.lock_info("demo") is None, 10, "the killed holder's lock to go")
    assert lock_rows(postgresql_database) == [lock_id]  # its row is left, and names nobody: no lock
    got = pg_store.acquire_lock("demo", "apply")
    assert lock_rows(postgresql_database) == [got]
    pg_store.release_lock("demo", got)
    assert lock_rows(postgresql_database) == [] and pg_store.lock_info("demo") is None


def test_breaking_a_live_holders_lock_ends_its_session(postgresql_database: str, pg_store: StateStore) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO), postgresql_database], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        lock_id = holder.stdout.readline().strip()
        pg_store.break_lock("demo", lock_id, "ops")
        newer = pg_store.acquire_lock("demo", "apply")  # at once: the holder's session is gone
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"  # its late release is harmless
        assert pg_store.lock_info("demo").id == newer  # type: ignore[union-attr]
        pg_store.release_lock("demo", newer)
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    assert [h.action for h in pg_store.history("demo")] == ["force-unlock"]


def test_runs_opening_a_new_database_at_once_create_its_schema_once(postgresql_database: str) -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from crane_iac.state.backends import open_store;"
            "s = open_store(sys.argv[2]); print(s.schema_version()); s.close()")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(REPO), postgresql_database], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [run.communicate(timeout=60) for run in runs]
    assert [(run.returncode, out.strip()) for run, (out, _err) in zip(runs, results, strict=True)] == [
        (0, str(SCHEMA_VERSION))] * 4, [err for _out, err in results]


def test_errors_name_the_database_and_never_the_password(postgresql_database: str) -> None:
    secret = postgresql_database.replace("postgres@", "postgres:hunter2@").replace("/crane_", "/missing_")
    with pytest.raises(StateError, match="cannot open the state database") as raised:
        open_store(secret)
    message = str(raised.value)
    assert "hunter2" not in message and "postgres:***@" in message and "create the database" in message
    store = open_store(postgresql_database.replace("postgres@", "postgres:hunter2@"))
    try:
        assert "hunter2" not in store.url and store.stacks() == []
    finally:
        store.close()
