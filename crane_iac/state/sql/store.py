"""The SQL state store: one row per resource, a serial per stack, a journal, settings, a lock per stack.

One class serves every SQL backend; what differs by dialect is small and kept apart:

- SQLite (``sqlite:///PATH``): the file is created with mode 0600 and runs in WAL mode; a write transaction
  starts with ``BEGIN IMMEDIATE`` so that reading the serial and writing the next one cannot interleave with
  another writer; a lock is a row (``locks.RowLocks``).
- PostgreSQL (``postgresql://…``, ``postgresql+psycopg://…``, psycopg 3): a write locks the stack's head row
  (``SELECT … FOR UPDATE``); reads run in one REPEATABLE READ snapshot; a lock is a session advisory lock
  (``locks.AdvisoryLocks``).

A backend's dialect module (the INSERT that knows ON CONFLICT) is imported only when that backend is opened. The
schema is migrated forward on open (``migrations``); a database from a newer crane is refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from sys import intern
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text, union
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from crane_iac.errors import StateError
from crane_iac.ipam.pools import Holder, Lease, LeaseRecord, PoolRecord, PoolSpec, Want
from crane_iac.objects import DEFAULT_ENDPOINT, Action, Recorded
from crane_iac.state.base import (
    Committed,
    Fence,
    HistoryEntry,
    Intent,
    Leader,
    LockInfo,
    RunInfo,
    Setting,
    StackDump,
    StackState,
    StateOutline,
    StateStore,
    mask_url,
)
from crane_iac.state.sql import dump, leaders, leases, writes
from crane_iac.state.sql.dialects import password_of, prepare_file, sqlite_begin, sqlite_connect
from crane_iac.state.sql.locks import AdvisoryLocks, RowLocks, advisory_key
from crane_iac.state.sql.migrations import migrate, stored_version
from crane_iac.state.sql.rows import JOURNAL, decode_all, history_entry, read_settings
from crane_iac.state.sql.schema import (
    FORGOTTEN,
    HISTORY,
    INTENTS,
    JOBS,
    SCHEMA_VERSION,
    STACKS,
    STATE_TABLES,
)

P = ParamSpec("P")
R = TypeVar("R")


def _db_errors(method: Callable[Concatenate[SqlStateStore, P], R]) -> Callable[Concatenate[SqlStateStore, P], R]:
    """A database failure (unreachable server, dropped connection, broken file) is a StateError naming the store
    (its password masked), not a traceback."""

    @functools.wraps(method)
    def wrapper(self: SqlStateStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            raise StateError(f"{self.url}: the state database failed: {self.redact(exc.orig)}") from None

    return wrapper


class SqlStateStore(StateStore):
    """The state store on SQLite or PostgreSQL, chosen by the URL's dialect."""

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self._secret = password_of(url)
        try:
            target = make_url(url)
        except ArgumentError:
            raise StateError(f"{self.url} is not a database URL; use sqlite:///PATH or "
                             "postgresql://USER@HOST/DATABASE") from None
        self.dialect = target.get_backend_name()
        #: rows inserted or deleted by this process (intents, resources, journal, stack head): benchmarks print it
        self.rows_written = 0
        self.connect_args: dict[str, Any] = {}
        self._locks: RowLocks | AdvisoryLocks
        self._writer: Engine
        self._reader: Engine
        if self.dialect == "sqlite":
            prepare_file(self.url, target.database)
            self.connect_args = {"timeout": 30}
            self.engine: Engine = create_engine(target, connect_args=self.connect_args)
            event.listen(self.engine, "connect", sqlite_connect)
            event.listen(self.engine, "begin", sqlite_begin)
            # a write transaction takes SQLite's write lock before it reads (the serial it then bumps)
            self._writer = self.engine.execution_options(crane_write=True)
            self._reader = self.engine
            self._locks = RowLocks(self)
        elif self.dialect == "postgresql":
            if target.drivername not in ("postgresql", "postgresql+psycopg"):
                raise StateError(f"{self.url}: crane's PostgreSQL state uses psycopg 3: write the URL as "
                                 "postgresql://… or postgresql+psycopg://…")
            target = target.set(drivername="postgresql+psycopg")
            self.connect_args = {"connect_timeout": 15, "application_name": "crane"}
            try:
                self.engine = create_engine(target, connect_args=self.connect_args)
            except ImportError as exc:
                raise StateError(f"{self.url}: PostgreSQL state needs psycopg 3 ({exc}): pip install "
                                 "'psycopg[binary]'") from None
            self._writer = self.engine
            # read() and export_stack() see one serial: their queries share a snapshot
            self._reader = self.engine.execution_options(isolation_level="REPEATABLE READ")
            self._locks = AdvisoryLocks(self)
            self.shared = True
        else:
            raise StateError(f"{self.url}: the SQL state store serves sqlite and postgresql, not {self.dialect!r}")
        try:
            self._migrate()
        except BaseException:
            self.close()  # an open connection left to the garbage collector is a ResourceWarning
            raise

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction: committed at the end, rolled back (nothing written) on an exception."""
        with self._writer.begin() as conn:
            yield conn

    def redact(self, reason: object) -> str:
        """A driver's message with the URL's password masked."""
        message = str(reason).strip()
        return message.replace(self._secret, "***") if self._secret else message

    def _migrate(self) -> None:
        try:
            with self.engine.connect() as conn:
                version = stored_version(conn)
            if version == SCHEMA_VERSION:
                return
            with self.writing() as conn:
                if self.dialect == "postgresql":  # crane runs opening a new database at once create it once
                    conn.execute(select(func.pg_advisory_xact_lock(advisory_key("schema"))))
                version = stored_version(conn)
                if version == SCHEMA_VERSION:
                    return
                if version is not None and version > SCHEMA_VERSION:
                    raise StateError(f"{self.url}: state schema {version} is newer than this crane "
                                     f"({SCHEMA_VERSION}); upgrade crane")
                migrate(conn, version)
        except DBAPIError as exc:
            hint = ""
            if self.dialect == "postgresql" and "does not exist" in str(exc.orig):
                hint = "; create the database (createdb NAME) or fix the URL"
            raise StateError(f"{self.url}: cannot open the state database: {self.redact(exc.orig)}{hint}") from None

    @_db_errors
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return stored_version(conn) or 0

    # reading

    @_db_errors
    def read(self, stack: str) -> StackState:
        with self._reader.connect() as conn:
            head = conn.execute(select(STACKS.c.serial, STACKS.c.lineage, STACKS.c.outputs)
                                .where(STACKS.c.name == stack)).first()
            # the one hot query (a row per resource): textual SQL skips the expression compiler, stays portable
            rows = conn.execute(text("SELECT address, kind, physical, properties, outputs, dependencies, protect, "
                                     "endpoint, endpoint_config FROM resources WHERE stack = :stack"),
                                {"stack": stack}).all()
            intent_rows = conn.execute(select(INTENTS.c.address, INTENTS.c.kind, INTENTS.c.physical,
                                              INTENTS.c.action, INTENTS.c.properties, INTENTS.c.at,
                                              INTENTS.c.endpoint)
                                       .where(INTENTS.c.stack == stack)).all()
            forgotten_rows = conn.execute(select(FORGOTTEN.c.address, FORGOTTEN.c.kind, FORGOTTEN.c.physical,
                                                 FORGOTTEN.c.properties, FORGOTTEN.c.endpoint)
                                          .where(FORGOTTEN.c.stack == stack)).all()
            settings = read_settings(conn, stack)
        loads = json.loads
        values = iter(decode_all(text for r in rows for text in (r[3], r[4], r[5])))
        resources = {r[0]: Recorded(r[0], intern(r[1]), r[2], next(values), next(values), next(values), bool(r[6]),
                                    intern(r[7]), intern(r[8])) for r in rows}
        intents = {r[0]: Intent(r[0], r[1], r[2], Action(r[3]), loads(r[4]), endpoint=r[6], at=r[5])
                   for r in intent_rows}
        forgotten = [Recorded(r[0], intern(r[1]), r[2], properties, endpoint=intern(r[4]))
                     for r, properties in zip(forgotten_rows, decode_all(r[3] for r in forgotten_rows), strict=True)]
        if head is None:
            return StackState(stack, 0, "", resources, intents, {}, forgotten, settings)
        return StackState(stack, head[0], head[1], resources, intents, loads(head[2]), forgotten, settings)

    @_db_errors
    def outline(self, stack: str) -> StateOutline:
        with self._reader.connect() as conn:
            head = conn.execute(select(STACKS.c.serial).where(STACKS.c.name == stack)).first()
            names = conn.execute(text("SELECT address, physical FROM resources WHERE stack = :stack"),
                                 {"stack": stack}).all()
            settings = read_settings(conn, stack)
        return StateOutline(head[0] if head is not None else 0, settings, {r[0]: r[1] for r in names})

    @_db_errors
    def history(self, stack: str, limit: int = 100) -> list[HistoryEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(JOURNAL.where(HISTORY.c.stack == stack).order_by(HISTORY.c.id.desc())
                                .limit(limit)).all()
        return [history_entry(r) for r in reversed(rows)]

    @_db_errors
    def settings(self, stack: str) -> dict[str, Setting]:
        with self.engine.connect() as conn:
            return read_settings(conn, stack)

    @_db_errors
    def stacks(self) -> list[str]:
        query = union(*(select(column.label("name")) for column in STATE_TABLES.values()))
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(query))

    # locking

    @_db_errors
    def lock_info(self, stack: str) -> LockInfo | None:
        return self._locks.info(stack)

    @_db_errors
    def acquire_lock(self, stack: str, operation: str, timeout: float = 0.0) -> str:
        return self._locks.acquire(stack, operation, timeout)

    @_db_errors
    def release_lock(self, stack: str, lock_id: str) -> None:
        self._locks.release(stack, lock_id)

    @_db_errors
    def break_lock(self, stack: str, lock_id: str, by: str, *, why: str = "crane force-unlock") -> LockInfo:
        return self._locks.break_(stack, lock_id, by, why)

    # writing (the statements are in ``writes``; the store opens the transaction and counts the rows)

    @_db_errors
    def record_intents(self, stack: str, intents: list[Intent]) -> None:
        if not intents:
            return
        with self.writing() as conn:
            written = writes.record_intents(conn, self.dialect, stack, intents)
        self.rows_written += written

    @_db_errors
    def commit(self, stack: str, committed: list[Committed], outputs: dict[str, Any] | None = None, *,
               expected_serial: int | None = None, run: RunInfo | None = None,
               released: Sequence[Lease] = ()) -> int:
        with self.writing() as conn:
            written = writes.commit(conn, self.dialect, stack, committed, outputs, expected_serial=expected_serial,
                                    run=run, released=released)
        self.rows_written += written.rows
        return written.serial

    @_db_errors
    def forget(self, stack: str, addresses: list[str], *, expected_serial: int | None = None,
               run: RunInfo | None = None) -> int:
        with self.writing() as conn:
            written = writes.forget(conn, self.dialect, stack, addresses, expected_serial=expected_serial, run=run)
        self.rows_written += written.rows
        return written.serial

    @_db_errors
    def unforget(self, stack: str, kind: str, physical: str, *, endpoint: str = DEFAULT_ENDPOINT) -> None:
        """Let crane manage a forgotten object again (`crane import`)."""
        with self.writing() as conn:
            writes.unforget(conn, stack, kind, physical, endpoint)

    @_db_errors
    def move(self, stack: str, moves: list[tuple[str, str]], *, expected_serial: int | None = None,
             run: RunInfo | None = None) -> int:
        with self.writing() as conn:
            written = writes.move(conn, self.dialect, stack, moves, expected_serial=expected_serial, run=run)
        self.rows_written += written.rows
        return written.serial

    @_db_errors
    def set_setting(self, stack: str, key: str, value: Any, *, by: str, why: str,
                    expected_serial: int | None = None, run: RunInfo | None = None, fence: Fence | None = None,
                    memory: Mapping[str, Any] | None = None) -> int:
        with self.writing() as conn:
            written = writes.set_setting(conn, self.dialect, stack, key, value, by=by, why=why,
                                         expected_serial=expected_serial, run=run, fence=fence, memory=memory)
        self.rows_written += written.rows + len(memory or ())
        return written.serial

    # replicated loops (``leaders``)

    @_db_errors
    def lead(self, stack: str, role: str, *, holder_id: str, ttl: float) -> Leader:
        with self.writing() as conn:
            return leaders.lead(conn, self.dialect, stack, role, holder_id, ttl)

    @_db_errors
    def leader(self, stack: str, role: str) -> Leader | None:
        with self.engine.connect() as conn:
            return leaders.leader(conn, stack, role)

    @_db_errors
    def resign(self, stack: str, role: str, *, holder_id: str) -> None:
        with self.writing() as conn:
            leaders.resign(conn, stack, role, holder_id)

    @_db_errors
    def remember(self, stack: str, memory: Mapping[str, Any], *, fence: Fence | None = None) -> None:
        with self.writing() as conn:
            if fence is not None:
                leaders.check(conn, stack, fence)
            leaders.remember(conn, stack, memory, fence.token if fence is not None else 0)

    @_db_errors
    def memory(self, stack: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return leaders.memory(conn, stack)

    # the job pipeline's journal

    @_db_errors
    def record_job(self, stack: str, name: str, record: Mapping[str, Any], *, line: Mapping[str, Any],
                   by: str = "") -> None:
        with self.writing() as conn:
            written = writes.record_job(conn, stack, name, record, line, by)
        self.rows_written += written.rows

    @_db_errors
    def jobs(self, stack: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(JOBS.c.name, JOBS.c.record).where(JOBS.c.stack == stack)
                                .order_by(JOBS.c.name)).all()
        return {r[0]: json.loads(r[1]) for r in rows}

    # address pools

    @_db_errors
    def lease(self, stack: str, pools: Sequence[PoolSpec], wants: Sequence[tuple[str, Want]], *,
              parents: dict[str, str] | None = None) -> dict[tuple[str, Holder], str]:
        with self.writing() as conn:
            return leases.lease(conn, self.dialect, stack, pools, wants, parents=parents)

    @_db_errors
    def ip_pools(self) -> list[PoolRecord]:
        with self._reader.connect() as conn:
            return leases.pools(conn)

    @_db_errors
    def ip_leases(self, *, pool: str | None = None, stack: str | None = None) -> list[LeaseRecord]:
        with self._reader.connect() as conn:
            return leases.leases(conn, pool=pool, stack=stack)

    @_db_errors
    def import_pools(self, pools: Sequence[PoolRecord], leases_: Sequence[LeaseRecord]) -> None:
        with self.writing() as conn:
            leases.import_records(conn, pools, leases_, self.url)

    @_db_errors
    def drop_pool(self, name: str) -> list[PoolRecord]:
        with self.writing() as conn:
            return leases.drop_pool(conn, name)

    @_db_errors
    def release_lease(self, pool: str, value: str) -> LeaseRecord:
        with self.writing() as conn:
            return leases.release_value(conn, pool, value)

    # copying between stores

    @_db_errors
    def export_stack(self, stack: str) -> StackDump:
        with self._reader.connect() as conn:
            return dump.export_stack(conn, stack)

    @_db_errors
    def import_stacks(self, dumps: Sequence[StackDump]) -> None:
        with self.writing() as conn:
            taken = dump.stacks_present(conn, [d.name for d in dumps])
            if taken:
                raise StateError(f"{self.url} already holds stack(s) {', '.join(map(repr, taken))}; nothing was "
                                 "copied: migrate into a store without them")
            for d in dumps:
                self.rows_written += dump.import_stack(conn, d)

    def close(self) -> None:
        self._locks.close()
        self.engine.dispose()

