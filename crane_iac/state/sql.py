"""The SQL state store (SQLAlchemy Core): one row per resource, a serial per stack, a journal, settings, a lock per
stack.

The tables are Core ``Table``s, not SQLModel classes, for start-up time: every query was Core already, and SQLModel
(with the ORM and the pydantic models it builds) made importing this module take 0.94 s of a 1.37 s no-op
``crane plan`` of the demo stack; with Core it takes 0.48 s and the plan 1.09 s (medians of 5 on the 2-core sandbox).
The schema is the one SQLModel declared (tests/state/test_schema.py pins its DDL), so older databases open unchanged.
A backend's dialect module (the INSERT that knows ON CONFLICT) is imported only when that backend is opened.

One class serves every SQL backend; what differs by dialect is small and kept apart:

- SQLite (``sqlite:///PATH``): the file is created with mode 0600 and runs in WAL mode; a write transaction
  starts with ``BEGIN IMMEDIATE`` so that reading the serial and writing the next one cannot interleave with
  another writer; a lock is a row, and a holder that died on this host is recognised by its pid.
- PostgreSQL (``postgresql://…``, ``postgresql+psycopg://…``, psycopg 3): a write locks the stack's head row
  (``SELECT … FOR UPDATE``); reads run in one REPEATABLE READ snapshot; a lock is a session advisory lock held by a
  connection of its own, so a holder killed with SIGKILL loses it with its connection. The lock row beside it only
  names the holder: a row whose advisory lock nobody holds is no lock.

The schema carries a version in ``crane_meta`` and is migrated forward on open; a database from a newer crane is
refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    union,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from crane_iac.errors import LockHeldError, StaleStateError, StateError
from crane_iac.objects import DEFAULT_ENDPOINT, Action, Recorded
from crane_iac.state.base import (
    Committed,
    Forgotten,
    HistoryEntry,
    Intent,
    LockInfo,
    RunInfo,
    Setting,
    StackDump,
    StackState,
    StateStore,
    mask_url,
    this_process,
)

SCHEMA_VERSION = 5


#: every table of the state database; ``create_all`` makes those a database lacks
SCHEMA = MetaData()


def _text(name: str, *, default: str | None = None, primary_key: bool = False, nullable: bool = False,
          index: bool = False) -> Column[str]:
    """A VARCHAR column; ``default`` is what an INSERT that leaves the column out writes."""
    return Column(name, String(), default=default, primary_key=primary_key, nullable=nullable, index=index)


def _int(name: str, *, default: int | None = None) -> Column[int]:
    return Column(name, Integer(), default=default, nullable=False)


META = Table("crane_meta", SCHEMA, _text("key", primary_key=True), _text("value"))
STACKS = Table("stacks", SCHEMA, _text("name", primary_key=True), _int("serial", default=0), _text("lineage"),
               _text("outputs", default="{}"))
RESOURCES = Table("resources", SCHEMA, _text("stack", primary_key=True), _text("address", primary_key=True),
                  _text("kind"), _text("physical"), _text("properties"), _text("outputs", default="{}"),
                  _text("dependencies", default="[]"), Column("protect", Boolean(), default=False, nullable=False),
                  _text("endpoint", default=DEFAULT_ENDPOINT))
INTENTS = Table("intents", SCHEMA, _text("stack", primary_key=True), _text("address", primary_key=True),
                _text("kind"), _text("physical"), _text("action"), _text("properties", default="{}"), _text("at"),
                _text("endpoint", default=DEFAULT_ENDPOINT))
HISTORY = Table("history", SCHEMA, Column("id", Integer(), primary_key=True), _text("stack", index=True),
                _int("serial"), _text("at"), _text("action"), _text("address"), _text("before", nullable=True),
                _text("after", nullable=True), _text("who", default=""), _text("why", default=""),
                _text("run", default=""))
LOCKS = Table("locks", SCHEMA, _text("stack", primary_key=True), _text("holder"), _text("host"), _int("pid"),
              _text("operation"), _text("acquired_at"), _text("lock_id", default=""))
#: objects `crane state rm` let go of: they stay on the hypervisor and crane leaves them alone
FORGOTTEN = Table("forgotten", SCHEMA, _text("stack", primary_key=True), _text("kind", primary_key=True),
                  _text("physical", primary_key=True), _text("address"), _text("properties", default="{}"),
                  _text("at"), _text("endpoint", default=DEFAULT_ENDPOINT))
#: durable per-stack settings (the autoscaler's desired size of a tier), with who set them and why
SETTINGS = Table("settings", SCHEMA, _text("stack", primary_key=True), _text("key", primary_key=True),
                 _text("value"), _text("who"), _text("why"), _text("at"), _int("serial"))
#: the locked runs (an apply, a refresh…) whose writes history lines name by ``run``: who ran what, since when
RUNS = Table("runs", SCHEMA, _text("stack", primary_key=True), _text("id", primary_key=True), _text("who"),
             _text("operation"), _text("started_at"))
#: the tables that hold a stack's state (locks are not state)
STATE_TABLES = {STACKS: STACKS.c.name, RESOURCES: RESOURCES.c.stack, INTENTS: INTENTS.c.stack,
                HISTORY: HISTORY.c.stack, FORGOTTEN: FORGOTTEN.c.stack, SETTINGS: SETTINGS.c.stack,
                RUNS: RUNS.c.stack}


def _add_column(conn: Connection, table: str, column: str, ddl: str) -> None:
    """Add a column unless ``create_all`` already made the table with it (a table new since that version)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def _v2_lock_ids(conn: Connection) -> None:
    """Version 2: locks carry an ID (force-unlock names it); the ``forgotten`` table is created by create_all."""
    _add_column(conn, "locks", "lock_id", "VARCHAR NOT NULL DEFAULT ''")


def _v3_settings_and_authors(conn: Connection) -> None:
    """Version 3: history lines say who and why; records keep their endpoint; the ``settings`` table is created by
    create_all."""
    _add_column(conn, "history", "who", "VARCHAR NOT NULL DEFAULT ''")
    _add_column(conn, "history", "why", "VARCHAR NOT NULL DEFAULT ''")
    _add_column(conn, "resources", "endpoint", f"VARCHAR NOT NULL DEFAULT '{DEFAULT_ENDPOINT}'")
    _add_column(conn, "forgotten", "endpoint", f"VARCHAR NOT NULL DEFAULT '{DEFAULT_ENDPOINT}'")


def _v4_intent_endpoints(conn: Connection) -> None:
    """Version 4: an intent names the endpoint its object is made on (and the steps of version 3 again, for a
    database an unreleased build marked version 3 with only the endpoint columns)."""
    _v3_settings_and_authors(conn)
    _add_column(conn, "intents", "endpoint", f"VARCHAR NOT NULL DEFAULT '{DEFAULT_ENDPOINT}'")


def _v5_runs(conn: Connection) -> None:
    """Version 5: a history line names the run that wrote it (lines written before say none); the ``runs`` table
    is created by create_all."""
    _add_column(conn, "history", "run", "VARCHAR NOT NULL DEFAULT ''")


#: version → step that brings a database from the version before it.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2_lock_ids, 3: _v3_settings_and_authors,
                                                      4: _v4_intent_endpoints, 5: _v5_runs}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(row.holder, row.operation, row.acquired_at, row.lock_id, row.host, row.pid)


def _held_message(stack: str, info: LockInfo) -> str:
    return (f"stack {stack!r} is locked by {info.holder} ({info.operation} since {info.acquired_at}), "
            f"lock ID {info.id}; wait for it, pass --lock-timeout SECONDS, or, if that run is gone, "
            f"run `crane force-unlock {info.id}`")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def advisory_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``name`` (a stack's lock, the schema migration)."""
    digest = hashlib.blake2b(f"crane:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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


class _RowLocks:
    """A row per locked stack (SQLite): a holder that died on this host is recognised by its pid."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store

    def acquire(self, stack: str, operation: str, timeout: float) -> str:
        host, pid = socket.gethostname(), os.getpid()
        holder = this_process()
        lock_id = str(uuid.uuid4())
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.store.writing() as conn:
                    conn.execute(insert(LOCKS).values(stack=stack, holder=holder, host=host, pid=pid,
                                                        operation=operation, acquired_at=_now(), lock_id=lock_id))
                return lock_id
            except IntegrityError:
                pass
            with self.store.writing() as conn:
                row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
                if row is not None and _lock_info(row).holder_running_here() is False:
                    # the holder died (crash, SIGKILL) on this host: its lock protects nothing
                    conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.pid == row.pid))
                    continue
            if row is None:
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(_held_message(stack, _lock_info(row)))
            time.sleep(0.2)

    def release(self, stack: str, lock_id: str) -> None:
        with self.store.writing() as conn:
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))

    def info(self, stack: str) -> LockInfo | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
        return _lock_info(row) if row else None

    def break_(self, stack: str, lock_id: str, by: str, why: str) -> LockInfo:
        with self.store.writing() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
            info = _check_break(stack, lock_id, _lock_info(row) if row else None)
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))
            _journal_break(conn, stack, info, by, why)
        return info

    def close(self) -> None:
        pass


class _AdvisoryLocks:
    """PostgreSQL session advisory locks, one connection each: the lock lives exactly as long as the holder's
    connection, so a holder killed with SIGKILL loses it. A row beside it names the holder for ``lock_info``."""

    #: the advisory lock of a stack, as pg_locks shows it: a bigint key is split into classid (high) and objid (low)
    HELD = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = :hi AND objid = :lo "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store
        #: stack → (lock ID, the connection holding its advisory lock)
        self.held: dict[str, tuple[str, Connection]] = {}
        self._engine: Engine | None = None

    def _connect(self) -> Connection:
        if self._engine is None:  # no pool: closing a lock's connection ends its session, and so the lock
            self._engine = create_engine(self.store.engine.url, poolclass=NullPool,
                                         connect_args=self.store.connect_args)
        return self._engine.connect()

    @classmethod
    def _holder_pid(cls, conn: Connection, stack: str) -> int | None:
        key = advisory_key(stack) & 0xFFFFFFFFFFFFFFFF
        pid = conn.execute(cls.HELD, {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        return None if pid is None else int(pid)

    def acquire(self, stack: str, operation: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        # a session's advisory locks nest: this store must not take a lock it holds a second time
        while (held := self.held.get(stack)) is not None:
            info = self.info(stack)
            if info is None or info.id != held[0]:  # someone broke it (and ended its session): forget it
                if self.held.get(stack) is held:
                    del self.held[stack]
                    self._hang_up(held[1])
                break
            if time.monotonic() >= deadline:
                raise LockHeldError(_held_message(stack, info))
            time.sleep(0.2)
        lock_id = str(uuid.uuid4())
        values = {"stack": stack, "holder": this_process(), "host": socket.gethostname(), "pid": os.getpid(),
                  "operation": operation, "lock_id": lock_id}
        conn = self._connect()
        try:
            while True:
                with conn.begin():
                    got = conn.execute(select(func.pg_try_advisory_lock(advisory_key(stack)))).scalar()
                    if got:  # ours now; a row left by a holder that died is replaced
                        conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack))
                        conn.execute(insert(LOCKS).values(**values, acquired_at=_now()))
                if got:
                    self.held[stack] = (lock_id, conn)
                    return lock_id
                info = self.info(stack)
                now = time.monotonic()
                if now >= deadline and info is not None:
                    raise LockHeldError(_held_message(stack, info))
                if now >= deadline + 5:  # a session holds the key and never names itself: not a crane run
                    raise LockHeldError(f"stack {stack!r} is locked by a database session that names no holder "
                                        f"(advisory lock {advisory_key(stack)} in pg_locks); end that session")
                # no row yet: the holder is between taking the lock and naming itself
                time.sleep(0.2 if info is not None else 0.02)
        except BaseException:
            conn.invalidate()
            conn.close()
            raise

    def release(self, stack: str, lock_id: str) -> None:
        with self.store.writing() as conn:
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))
        held = self.held.get(stack)
        if held is not None and held[0] == lock_id:
            del self.held[stack]
            self._hang_up(held[1])

    @staticmethod
    def _hang_up(conn: Connection) -> None:
        """End the lock's session at once (no reset round trip): the server drops its advisory lock."""
        conn.invalidate()
        conn.close()

    def info(self, stack: str) -> LockInfo | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
            if row is None or self._holder_pid(conn, stack) is None:
                return None
        return _lock_info(row)

    def break_(self, stack: str, lock_id: str, by: str, why: str) -> LockInfo:
        with self.store.writing() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack).with_for_update()).first()
            backend = self._holder_pid(conn, stack)
            # a row whose advisory lock nobody holds names a holder that is gone: no lock
            info = _check_break(stack, lock_id, _lock_info(row) if row is not None and backend is not None else None)
            ours = self.held.get(stack)
            if ours is not None and ours[0] == lock_id:
                del self.held[stack]
                self._hang_up(ours[1])
            elif backend is not None:
                try:
                    ended = conn.execute(select(func.pg_terminate_backend(backend, 5000))).scalar()
                except DBAPIError as exc:
                    raise StateError(f"cannot end the database session {backend} that holds the lock of stack "
                                     f"{stack!r}: {self.store.redact(exc.orig)}; ask the database's administrator "
                                     f"to run SELECT pg_terminate_backend({backend})") from None
                if not ended:
                    raise StateError(f"the database session {backend} holding the lock of stack {stack!r} did not "
                                     "end within 5 s; try again")
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))
            _journal_break(conn, stack, info, by, why)
        return info

    def close(self) -> None:
        for _lock_id, conn in self.held.values():
            self._hang_up(conn)
        self.held.clear()
        if self._engine is not None:
            self._engine.dispose()


def _check_break(stack: str, lock_id: str, info: LockInfo | None) -> LockInfo:
    if info is None:
        raise StateError(f"stack {stack!r} is not locked; nothing to unlock")
    if info.id != lock_id:
        raise StateError(f"stack {stack!r} is locked with ID {info.id}, not {lock_id} (held by "
                         f"{info.holder}, {info.operation} since {info.acquired_at}); copy the ID from the "
                         "'locked by' message")
    return info


def _journal_break(conn: Connection, stack: str, info: LockInfo, by: str, why: str) -> None:
    head = conn.execute(select(STACKS.c.serial).where(STACKS.c.name == stack)).first()
    conn.execute(insert(HISTORY).values(
        stack=stack, serial=head[0] if head else 0, at=_now(), action="force-unlock", address=f"lock {info.id}",
        before=json.dumps({"holder": info.holder, "operation": info.operation, "acquired_at": info.acquired_at}),
        after=json.dumps({"broken_by": by}), who=by, why=why))


class SqlStateStore(StateStore):
    """The state store on SQLite or PostgreSQL, chosen by the URL's dialect."""

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self._secret = _password(url)
        try:
            target = make_url(url)
        except ArgumentError:
            raise StateError(f"{self.url} is not a database URL; use sqlite:///PATH or "
                             "postgresql://USER@HOST/DATABASE") from None
        self.dialect = target.get_backend_name()
        #: rows inserted or deleted by this process (intents, resources, journal, stack head): benchmarks print it
        self.rows_written = 0
        self.connect_args: dict[str, Any] = {}
        self._locks: _RowLocks | _AdvisoryLocks
        self._writer: Engine
        self._reader: Engine
        if self.dialect == "sqlite":
            self._prepare_file(target.database)
            self.connect_args = {"timeout": 30}
            self.engine: Engine = create_engine(target, connect_args=self.connect_args)
            event.listen(self.engine, "connect", self._sqlite_connect)
            event.listen(self.engine, "begin", self._sqlite_begin)
            # a write transaction takes SQLite's write lock before it reads (the serial it then bumps)
            self._writer = self.engine.execution_options(crane_write=True)
            self._reader = self.engine
            self._locks = _RowLocks(self)
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
            self._locks = _AdvisoryLocks(self)
        else:
            raise StateError(f"{self.url}: the SQL state store serves sqlite and postgresql, not {self.dialect!r}")
        try:
            self._migrate()
        except BaseException:
            self.close()  # an open connection left to the garbage collector is a ResourceWarning
            raise

    # dialect parts

    def _prepare_file(self, database: str | None) -> None:
        if not database or database == ":memory:":
            raise StateError(f"{self.url}: SQLite state needs a file: use sqlite:///PATH")
        path = Path(database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the state database {path}: {exc.strerror}") from None

    @staticmethod
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # crane says when a transaction begins (_sqlite_begin), not pysqlite
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @staticmethod
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("crane_write") else "BEGIN")

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction: committed at the end, rolled back (nothing written) on an exception."""
        with self._writer.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (imported here: only the backend in use loads its dialect)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def redact(self, reason: object) -> str:
        """A driver's message with the URL's password masked."""
        message = str(reason).strip()
        return message.replace(self._secret, "***") if self._secret else message

    def _migrate(self) -> None:
        try:
            with self.engine.connect() as conn:
                version = self._version(conn)
            if version == SCHEMA_VERSION:
                return
            with self.writing() as conn:
                if self.dialect == "postgresql":  # crane runs opening a new database at once create it once
                    conn.execute(select(func.pg_advisory_xact_lock(advisory_key("schema"))))
                version = self._version(conn)
                if version == SCHEMA_VERSION:
                    return
                if version is not None and version > SCHEMA_VERSION:
                    raise StateError(f"{self.url}: state schema {version} is newer than this crane "
                                     f"({SCHEMA_VERSION}); upgrade crane")
                SCHEMA.create_all(conn)
                if version is not None:
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        if step in MIGRATIONS:
                            MIGRATIONS[step](conn)
                conn.execute(delete(META).where(META.c.key == "schema_version"))
                conn.execute(insert(META).values(key="schema_version", value=str(SCHEMA_VERSION)))
        except DBAPIError as exc:
            hint = ""
            if self.dialect == "postgresql" and "does not exist" in str(exc.orig):
                hint = "; create the database (createdb NAME) or fix the URL"
            raise StateError(f"{self.url}: cannot open the state database: {self.redact(exc.orig)}{hint}") from None

    @staticmethod
    def _version(conn: Connection) -> int | None:
        """The database's schema version: None for an empty database, 0 for one older than versions."""
        if not conn.dialect.has_table(conn, "crane_meta"):
            return None
        row = conn.execute(select(META.c.value).where(META.c.key == "schema_version")).first()
        return int(row[0]) if row else 0

    @_db_errors
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._version(conn) or 0

    # reading

    @_db_errors
    def read(self, stack: str) -> StackState:
        with self._reader.connect() as conn:
            head = conn.execute(select(STACKS.c.serial, STACKS.c.lineage, STACKS.c.outputs)
                                .where(STACKS.c.name == stack)).first()
            # the one hot query (a row per resource): textual SQL skips the expression compiler, stays portable
            rows = conn.execute(text("SELECT address, kind, physical, properties, outputs, dependencies, protect, "
                                     "endpoint FROM resources WHERE stack = :stack"), {"stack": stack}).all()
            intent_rows = conn.execute(select(INTENTS.c.address, INTENTS.c.kind, INTENTS.c.physical,
                                              INTENTS.c.action, INTENTS.c.properties, INTENTS.c.at,
                                              INTENTS.c.endpoint)
                                       .where(INTENTS.c.stack == stack)).all()
            forgotten_rows = conn.execute(select(FORGOTTEN.c.address, FORGOTTEN.c.kind, FORGOTTEN.c.physical,
                                                 FORGOTTEN.c.properties, FORGOTTEN.c.endpoint)
                                          .where(FORGOTTEN.c.stack == stack)).all()
            settings = self._settings(conn, stack)
        loads = json.loads
        resources = {
            r[0]: Recorded(r[0], r[1], r[2], loads(r[3]), loads(r[4]), loads(r[5]), bool(r[6]), r[7]) for r in rows
        }
        intents = {r[0]: Intent(r[0], r[1], r[2], Action(r[3]), loads(r[4]), endpoint=r[6], at=r[5])
                   for r in intent_rows}
        forgotten = [Recorded(r[0], r[1], r[2], loads(r[3]), endpoint=r[4]) for r in forgotten_rows]
        if head is None:
            return StackState(stack, 0, "", resources, intents, {}, forgotten, settings)
        return StackState(stack, head[0], head[1], resources, intents, loads(head[2]), forgotten, settings)

    #: history lines with the run each names (None where it names none)
    JOURNAL = select(HISTORY, RUNS.c.who.label("run_by"), RUNS.c.operation.label("run_operation"),
                     RUNS.c.started_at.label("run_started_at")).select_from(
        HISTORY.outerjoin(RUNS, (RUNS.c.stack == HISTORY.c.stack) & (RUNS.c.id == HISTORY.c.run)))

    @staticmethod
    def _history_entry(r: Any) -> HistoryEntry:
        run = RunInfo(r.run, r.run_by, r.run_operation, r.run_started_at) if r.run and r.run_by is not None else None
        return HistoryEntry(r.serial, r.at, r.action, r.address, _loads(r.before), _loads(r.after), r.who, r.why,
                            run)

    @_db_errors
    def history(self, stack: str, limit: int = 100) -> list[HistoryEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(self.JOURNAL.where(HISTORY.c.stack == stack).order_by(HISTORY.c.id.desc())
                                .limit(limit)).all()
        return [self._history_entry(r) for r in reversed(rows)]

    @staticmethod
    def _settings(conn: Connection, stack: str) -> dict[str, Setting]:
        rows = conn.execute(select(SETTINGS).where(SETTINGS.c.stack == stack)).all()
        return {r.key: Setting(json.loads(r.value), r.who, r.why, r.at, r.serial) for r in rows}

    @_db_errors
    def settings(self, stack: str) -> dict[str, Setting]:
        with self.engine.connect() as conn:
            return self._settings(conn, stack)

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

    # writing

    @_db_errors
    def record_intents(self, stack: str, intents: list[Intent]) -> None:
        if not intents:
            return
        at = _now()
        rows = [{"stack": stack, "address": i.address, "kind": i.kind, "physical": i.physical,
                 "action": str(i.action), "properties": json.dumps(i.properties), "at": at, "endpoint": i.endpoint}
                for i in intents]
        statement = self._insert(INTENTS)
        statement = statement.on_conflict_do_update(
            index_elements=[INTENTS.c.stack, INTENTS.c.address],
            set_={c: statement.excluded[c] for c in ("kind", "physical", "action", "properties", "at", "endpoint")})
        with self.writing() as conn:
            self.rows_written += len(intents)
            conn.execute(statement, rows)

    def _bump(self, conn: Connection, stack: str, outputs: dict[str, Any] | None = None,
              expected_serial: int | None = None) -> tuple[int, dict[str, Any]]:
        """Advance the stack's serial (creating its head row) and set its outputs; returns the new serial and the
        outputs it had before. The head row stays locked until the transaction ends, so concurrent writers take
        turns; with ``expected_serial``, a writer that lost the race raises StaleStateError."""
        locked = select(STACKS.c.serial, STACKS.c.outputs).where(STACKS.c.name == stack).with_for_update()
        head = conn.execute(locked).first()
        if head is None:  # the first write: writers racing to create the head row all end up locking it
            conn.execute(self._insert(STACKS).values(name=stack, serial=0, lineage=str(uuid.uuid4()), outputs="{}")
                         .on_conflict_do_nothing(index_elements=[STACKS.c.name]))
            head = conn.execute(locked).one()
        serial, old_outputs = head[0], json.loads(head[1])
        if expected_serial is not None and serial != expected_serial:
            raise StaleStateError(
                f"stack {stack!r} is at serial {serial}, not {expected_serial} as this run read it: another run "
                f"changed its state meanwhile, and nothing was written; read the state again (`crane plan`) and "
                "retry")
        values: dict[str, Any] = {"serial": serial + 1}
        if outputs is not None:
            values["outputs"] = json.dumps(outputs)
        conn.execute(STACKS.update().where(STACKS.c.name == stack).values(**values))
        return serial + 1, old_outputs

    def _note_run(self, conn: Connection, stack: str, run: RunInfo | None) -> str:
        """Record the run making a write (once per run) and return the ID its journal lines carry ("" for none)."""
        if run is None:
            return ""
        conn.execute(self._insert(RUNS).values(stack=stack, id=run.id, who=run.by, operation=run.operation,
                                               started_at=run.started_at)
                     .on_conflict_do_nothing(index_elements=[RUNS.c.stack, RUNS.c.id]))
        return run.id

    @_db_errors
    def commit(self, stack: str, committed: list[Committed], outputs: dict[str, Any] | None = None, *,
               expected_serial: int | None = None, run: RunInfo | None = None) -> int:
        at = _now()
        dumps = json.dumps
        with self.writing() as conn:
            serial, old_outputs = self._bump(conn, stack, outputs, expected_serial)
            run_id = self._note_run(conn, stack, run)
            addresses = [c.address for c in committed]
            for start in range(0, len(addresses), 500):
                chunk = addresses[start:start + 500]
                conn.execute(delete(RESOURCES).where(RESOURCES.c.stack == stack,
                                                       RESOURCES.c.address.in_(chunk)))
            finished = [c.address for c in committed if c.final]
            for start in range(0, len(finished), 500):
                conn.execute(delete(INTENTS).where(INTENTS.c.stack == stack, INTENTS.c.address.in_(
                    finished[start:start + 500])))
            rows = [  # a step of a batch is recorded over the one before it for the same address
                {"stack": stack, "address": c.address, "kind": c.record.kind, "physical": c.record.physical,
                 "properties": dumps(c.record.properties), "outputs": dumps(c.record.outputs),
                 "dependencies": dumps(c.record.dependencies), "protect": c.record.protect,
                 "endpoint": c.record.endpoint}
                for c in {c.address: c for c in committed}.values() if c.record is not None
            ]
            if rows:
                conn.execute(insert(RESOURCES), rows)
            journal = [
                {"stack": stack, "serial": serial, "at": at, "action": str(c.action), "address": c.address,
                 "before": dumps(c.before) if c.before is not None else None,
                 "after": dumps(c.record.properties) if c.record is not None else None, "who": "", "why": "",
                 "run": run_id}
                for c in committed
            ]
            if not journal:  # every serial leaves a line in the history, so a stale plan's serials can be found
                journal.append({"stack": stack, "serial": serial, "at": at, "action": "outputs",
                                "address": "(stack outputs)", "before": dumps(old_outputs),
                                "after": dumps(outputs) if outputs is not None else None, "who": "", "why": "",
                                "run": run_id})
            conn.execute(insert(HISTORY), journal)
            self.rows_written += 1 + len(rows) + len(journal) + len(addresses)
        return serial

    @_db_errors
    def forget(self, stack: str, addresses: list[str], *, expected_serial: int | None = None,
               run: RunInfo | None = None) -> int:
        at = _now()
        with self.writing() as conn:
            serial, _ = self._bump(conn, stack, expected_serial=expected_serial)
            run_id = self._note_run(conn, stack, run)
            rows = conn.execute(select(RESOURCES).where(RESOURCES.c.stack == stack,
                                                        RESOURCES.c.address.in_(addresses))).all()
            missing = sorted(set(addresses) - {r.address for r in rows})
            if missing:
                raise StateError(f"no resource {missing[0]!r} in the state of stack {stack!r}; see `crane state list`")
            conn.execute(delete(RESOURCES).where(RESOURCES.c.stack == stack, RESOURCES.c.address.in_(addresses)))
            conn.execute(delete(INTENTS).where(INTENTS.c.stack == stack, INTENTS.c.address.in_(addresses)))
            for r in rows:
                conn.execute(delete(FORGOTTEN).where(FORGOTTEN.c.stack == stack, FORGOTTEN.c.kind == r.kind,
                                                     FORGOTTEN.c.physical == r.physical))
            conn.execute(insert(FORGOTTEN), [
                {"stack": stack, "kind": r.kind, "physical": r.physical, "address": r.address,
                 "properties": r.properties, "at": at, "endpoint": r.endpoint} for r in rows])
            conn.execute(insert(HISTORY), [
                {"stack": stack, "serial": serial, "at": at, "action": "forget", "address": r.address,
                 "before": r.properties, "after": None, "who": "", "why": "", "run": run_id} for r in rows])
            self.rows_written += 1 + 3 * len(rows)
        return serial

    @_db_errors
    def unforget(self, stack: str, kind: str, physical: str) -> None:
        """Let crane manage a forgotten object again (`crane import`)."""
        with self.writing() as conn:
            conn.execute(delete(FORGOTTEN).where(FORGOTTEN.c.stack == stack, FORGOTTEN.c.kind == kind,
                                                 FORGOTTEN.c.physical == physical))

    @_db_errors
    def move(self, stack: str, moves: list[tuple[str, str]], *, expected_serial: int | None = None,
             run: RunInfo | None = None) -> int:
        at = _now()
        with self.writing() as conn:
            serial, _ = self._bump(conn, stack, expected_serial=expected_serial)
            run_id = self._note_run(conn, stack, run)
            present = {r[0] for r in conn.execute(select(RESOURCES.c.address).where(
                RESOURCES.c.stack == stack, RESOURCES.c.address.in_([a for m in moves for a in m]))).all()}
            for old, new in moves:
                if old not in present:
                    raise StateError(f"no resource {old!r} in the state of stack {stack!r}; see `crane state list`")
                if new in present:
                    raise StateError(f"{new!r} is already in the state of stack {stack!r}; "
                                     f"`crane state rm {new}` first if that record is wrong")
                present.discard(old)
                present.add(new)
            renames = dict(moves)
            for old, new in moves:
                for table in (RESOURCES, INTENTS):
                    conn.execute(table.update().where(table.c.stack == stack, table.c.address == old)
                                 .values(address=new))
            # dependencies recorded by other resources follow the move
            needles = [f'%"{old}"%' for old, _ in moves]
            for row in conn.execute(select(RESOURCES.c.address, RESOURCES.c.dependencies).where(
                    RESOURCES.c.stack == stack, or_(*(RESOURCES.c.dependencies.like(n) for n in needles)))).all():
                deps = [renames.get(d, d) for d in json.loads(row[1])]
                conn.execute(RESOURCES.update().where(RESOURCES.c.stack == stack, RESOURCES.c.address == row[0])
                             .values(dependencies=json.dumps(deps)))
            conn.execute(insert(HISTORY), [
                {"stack": stack, "serial": serial, "at": at, "action": "move", "address": new,
                 "before": json.dumps({"address": old}), "after": json.dumps({"address": new}), "who": "", "why": "",
                 "run": run_id}
                for old, new in moves])
            self.rows_written += 1 + 3 * len(moves)
        return serial

    @_db_errors
    def set_setting(self, stack: str, key: str, value: Any, *, by: str, why: str,
                    expected_serial: int | None = None, run: RunInfo | None = None) -> int:
        try:
            encoded = None if value is None else json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StateError(f"setting {key!r} of stack {stack!r}: {exc}; a setting is a JSON value") from None
        at = _now()
        with self.writing() as conn:
            serial, _ = self._bump(conn, stack, expected_serial=expected_serial)
            run_id = self._note_run(conn, stack, run)
            old = conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.stack == stack, SETTINGS.c.key == key)
                               ).first()
            conn.execute(delete(SETTINGS).where(SETTINGS.c.stack == stack, SETTINGS.c.key == key))
            if encoded is not None:
                conn.execute(insert(SETTINGS).values(stack=stack, key=key, value=encoded, who=by, why=why, at=at,
                                                     serial=serial))
            conn.execute(insert(HISTORY).values(
                stack=stack, serial=serial, at=at, action="setting", address=f"setting:{key}",
                before=None if old is None else json.dumps({"value": json.loads(old[0])}),
                after=None if encoded is None else json.dumps({"value": value}), who=by, why=why, run=run_id))
            self.rows_written += 3
        return serial

    # copying between stores

    @_db_errors
    def export_stack(self, stack: str) -> StackDump:
        with self._reader.connect() as conn:
            head = conn.execute(select(STACKS).where(STACKS.c.name == stack)).first()
            resources = [Recorded(r.address, r.kind, r.physical, json.loads(r.properties), json.loads(r.outputs),
                                  json.loads(r.dependencies), bool(r.protect), r.endpoint)
                         for r in conn.execute(select(RESOURCES).where(RESOURCES.c.stack == stack)
                                               .order_by(RESOURCES.c.address))]
            intents = [Intent(r.address, r.kind, r.physical, Action(r.action), json.loads(r.properties),
                              endpoint=r.endpoint, at=r.at)
                       for r in conn.execute(select(INTENTS).where(INTENTS.c.stack == stack)
                                             .order_by(INTENTS.c.address))]
            forgotten = [Forgotten(Recorded(r.address, r.kind, r.physical, json.loads(r.properties),
                                            endpoint=r.endpoint), r.at)
                         for r in conn.execute(select(FORGOTTEN).where(FORGOTTEN.c.stack == stack)
                                               .order_by(FORGOTTEN.c.kind, FORGOTTEN.c.physical))]
            history = [self._history_entry(r) for r in conn.execute(
                self.JOURNAL.where(HISTORY.c.stack == stack).order_by(HISTORY.c.id))]
            settings = self._settings(conn, stack)
        serial, lineage, outputs = (head.serial, head.lineage, json.loads(head.outputs)) if head else (0, "", {})
        return StackDump(stack, serial, lineage, outputs, resources, intents, forgotten, history, settings)

    @_db_errors
    def import_stacks(self, dumps: Sequence[StackDump]) -> None:
        names = [d.name for d in dumps]
        with self.writing() as conn:
            present = union(*(select(column.label("name")).where(column.in_(names))
                              for column in STATE_TABLES.values()))
            taken = sorted(r[0] for r in conn.execute(present))
            if taken:
                raise StateError(f"{self.url} already holds stack(s) {', '.join(map(repr, taken))}; nothing was "
                                 "copied: migrate into a store without them")
            for d in dumps:
                self._import(conn, d)

    def _import(self, conn: Connection, d: StackDump) -> None:
        dumps, stack = json.dumps, d.name
        if d.lineage or d.serial:
            conn.execute(insert(STACKS).values(name=stack, serial=d.serial, lineage=d.lineage or str(uuid.uuid4()),
                                               outputs=dumps(d.outputs)))
        batches: list[tuple[Table, list[dict[str, Any]]]] = [
            (RESOURCES, [{"stack": stack, "address": r.address, "kind": r.kind, "physical": r.physical,
                          "properties": dumps(r.properties), "outputs": dumps(r.outputs),
                          "dependencies": dumps(r.dependencies), "protect": r.protect, "endpoint": r.endpoint}
                         for r in d.resources]),
            (INTENTS, [{"stack": stack, "address": i.address, "kind": i.kind, "physical": i.physical,
                        "action": str(i.action), "properties": dumps(i.properties), "at": i.at or _now(),
                        "endpoint": i.endpoint}
                       for i in d.intents]),
            (FORGOTTEN, [{"stack": stack, "kind": f.record.kind, "physical": f.record.physical,
                          "address": f.record.address, "properties": dumps(f.record.properties), "at": f.at,
                          "endpoint": f.record.endpoint} for f in d.forgotten]),
            (RUNS, [{"stack": stack, "id": r.id, "who": r.by, "operation": r.operation, "started_at": r.started_at}
                    for r in {h.run.id: h.run for h in d.history if h.run is not None}.values()]),
            (HISTORY, [{"stack": stack, "serial": h.serial, "at": h.at, "action": h.action, "address": h.address,
                        "before": _json(h.before), "after": _json(h.after), "who": h.by, "why": h.why,
                        "run": h.run.id if h.run is not None else ""}
                       for h in d.history]),
            (SETTINGS, [{"stack": stack, "key": k, "value": dumps(s.value), "who": s.by, "why": s.why, "at": s.at,
                         "serial": s.serial} for k, s in d.settings.items()]),
        ]
        for table, rows in batches:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[start:start + 5000])
                self.rows_written += len(rows[start:start + 5000])

    def close(self) -> None:
        self._locks.close()
        self.engine.dispose()


def _password(url: str) -> str:
    """The password in ``url`` (to mask it wherever a driver repeats it), or ""."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return ""
    return str(parsed.password or parsed.query.get("password") or "")

