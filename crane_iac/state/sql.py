"""The SQL state store (SQLModel): one row per resource, a serial per stack, a journal, a lock per stack.

SQLite by default (file mode 0600, WAL). The schema carries a version in ``crane_meta``
and is migrated forward on open; a database from a newer crane is refused.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, event, insert, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, SQLModel, create_engine

from crane_iac.errors import LockHeldError, StateError
from crane_iac.objects import DEFAULT_ENDPOINT, Action, Recorded
from crane_iac.state.base import Committed, HistoryEntry, Intent, LockInfo, StackState, StateStore, this_process

SCHEMA_VERSION = 3


class MetaRow(SQLModel, table=True):
    __tablename__ = "crane_meta"
    key: str = Field(primary_key=True)
    value: str


class StackRow(SQLModel, table=True):
    __tablename__ = "stacks"
    name: str = Field(primary_key=True)
    serial: int = 0
    lineage: str
    outputs: str = "{}"


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resources"
    stack: str = Field(primary_key=True)
    address: str = Field(primary_key=True)
    kind: str
    physical: str
    properties: str
    outputs: str = "{}"
    dependencies: str = "[]"
    protect: bool = False
    endpoint: str = DEFAULT_ENDPOINT


class IntentRow(SQLModel, table=True):
    __tablename__ = "intents"
    stack: str = Field(primary_key=True)
    address: str = Field(primary_key=True)
    kind: str
    physical: str
    action: str
    properties: str = "{}"
    at: str
    endpoint: str = DEFAULT_ENDPOINT


class HistoryRow(SQLModel, table=True):
    __tablename__ = "history"
    id: int | None = Field(default=None, primary_key=True)
    stack: str = Field(index=True)
    serial: int
    at: str
    action: str
    address: str
    before: str | None = None
    after: str | None = None


class LockRow(SQLModel, table=True):
    __tablename__ = "locks"
    stack: str = Field(primary_key=True)
    holder: str
    host: str
    pid: int
    operation: str
    acquired_at: str
    lock_id: str = ""


class ForgottenRow(SQLModel, table=True):
    """An object `crane state rm` let go of: it stays on the hypervisor and crane leaves it alone."""

    __tablename__ = "forgotten"
    stack: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    physical: str = Field(primary_key=True)
    address: str
    properties: str = "{}"
    at: str
    endpoint: str = DEFAULT_ENDPOINT


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


META, STACKS, RESOURCES, INTENTS, HISTORY, LOCKS, FORGOTTEN = (
    _table(m) for m in (MetaRow, StackRow, ResourceRow, IntentRow, HistoryRow, LockRow, ForgottenRow))


def _v2_lock_ids(conn: Any) -> None:
    """Version 2: locks carry an ID (force-unlock names it); the ``forgotten`` table is created by create_all."""
    columns = {row[1] for row in conn.execute(text("PRAGMA table_info(locks)"))} if conn.dialect.name == "sqlite" \
        else set()
    if "lock_id" not in columns:
        conn.execute(text("ALTER TABLE locks ADD COLUMN lock_id VARCHAR NOT NULL DEFAULT ''"))


def _v3_endpoints(conn: Any) -> None:
    """Version 3: a stack may use several endpoints; what state recorded before was on the default one."""
    for table in ("resources", "intents", "forgotten"):
        columns = {row[1] for row in conn.execute(text(f"PRAGMA table_info({table})"))} \
            if conn.dialect.name == "sqlite" else set()
        if "endpoint" not in columns:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN endpoint VARCHAR NOT NULL DEFAULT '{DEFAULT_ENDPOINT}'"))


#: version → step that brings a database from the version before it.
MIGRATIONS: dict[int, Callable[[Any], None]] = {2: _v2_lock_ids, 3: _v3_endpoints}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(row.holder, row.operation, row.acquired_at, row.lock_id, row.host, row.pid)


class SqlStateStore(StateStore):
    def __init__(self, url: str) -> None:
        self.url = url
        path = Path(url.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the state database {path}: {exc.strerror}") from None
        self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
        #: rows inserted or deleted by this process (intents, resources, journal, stack head): benchmarks print it
        self.rows_written = 0
        event.listen(self.engine, "connect", self._pragmas)
        self._migrate()

    @staticmethod
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def _migrate(self) -> None:
        try:
            with self.engine.begin() as conn:
                fresh = not conn.dialect.has_table(conn, "crane_meta")
                SQLModel.metadata.create_all(conn)
                row = conn.execute(select(META.c.value).where(META.c.key == "schema_version")).first()
                version = SCHEMA_VERSION if fresh else int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StateError(f"{self.url}: state schema {version} is newer than this crane "
                                     f"({SCHEMA_VERSION}); upgrade crane")
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    if step in MIGRATIONS:
                        MIGRATIONS[step](conn)
                if fresh or version != SCHEMA_VERSION:
                    conn.execute(delete(META).where(META.c.key == "schema_version"))
                    conn.execute(insert(META).values(key="schema_version", value=str(SCHEMA_VERSION)))
        except OperationalError as exc:
            raise StateError(f"{self.url}: cannot open the state database: {exc.orig}") from None

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(select(META.c.value).where(META.c.key == "schema_version")).first()
        return int(row[0]) if row else 0

    # reading

    def read(self, stack: str) -> StackState:
        with self.engine.connect() as conn:
            head = conn.execute(select(STACKS.c.serial, STACKS.c.lineage, STACKS.c.outputs)
                                .where(STACKS.c.name == stack)).first()
            # the one hot query (a row per resource): textual SQL skips the expression compiler, stays portable
            rows = conn.execute(text("SELECT address, kind, physical, properties, outputs, dependencies, protect, "
                                     "endpoint FROM resources WHERE stack = :stack"), {"stack": stack}).all()
            intent_rows = conn.execute(select(INTENTS.c.address, INTENTS.c.kind, INTENTS.c.physical,
                                              INTENTS.c.action, INTENTS.c.properties, INTENTS.c.endpoint)
                                       .where(INTENTS.c.stack == stack)).all()
            forgotten_rows = conn.execute(select(FORGOTTEN.c.address, FORGOTTEN.c.kind, FORGOTTEN.c.physical,
                                                 FORGOTTEN.c.properties, FORGOTTEN.c.endpoint)
                                          .where(FORGOTTEN.c.stack == stack)).all()
        loads = json.loads
        resources = {
            r[0]: Recorded(r[0], r[1], r[2], loads(r[3]), loads(r[4]), loads(r[5]), bool(r[6]), r[7]) for r in rows
        }
        intents = {r[0]: Intent(r[0], r[1], r[2], Action(r[3]), loads(r[4]), r[5]) for r in intent_rows}
        forgotten = [Recorded(r[0], r[1], r[2], loads(r[3]), endpoint=r[4]) for r in forgotten_rows]
        if head is None:
            return StackState(stack, 0, "", resources, intents, {}, forgotten)
        return StackState(stack, head[0], head[1], resources, intents, loads(head[2]), forgotten)

    def history(self, stack: str, limit: int = 100) -> list[HistoryEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(HISTORY.c.serial, HISTORY.c.at, HISTORY.c.action, HISTORY.c.address,
                                       HISTORY.c.before, HISTORY.c.after)
                                .where(HISTORY.c.stack == stack).order_by(HISTORY.c.id.desc())
                                .limit(limit)).all()
        return [HistoryEntry(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None,
                             json.loads(r[5]) if r[5] else None) for r in reversed(rows)]

    def lock_info(self, stack: str) -> LockInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
        return _lock_info(row) if row else None

    # locking

    def acquire_lock(self, stack: str, operation: str, timeout: float = 0.0) -> str:
        host, pid = socket.gethostname(), os.getpid()
        holder = this_process()
        lock_id = str(uuid.uuid4())
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(LOCKS).values(stack=stack, holder=holder, host=host, pid=pid,
                                                        operation=operation, acquired_at=_now(), lock_id=lock_id))
                return lock_id
            except IntegrityError:
                pass
            with self.engine.begin() as conn:
                row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
                if row is not None and _lock_info(row).holder_running_here() is False:
                    # the holder died (crash, SIGKILL) on this host: its lock protects nothing
                    conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.pid == row.pid))
                    continue
            if row is None:
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    f"stack {stack!r} is locked by {row.holder} ({row.operation} since {row.acquired_at}), "
                    f"lock ID {row.lock_id}; wait for it, pass --lock-timeout SECONDS, or, if that run is gone, "
                    f"run `crane force-unlock {row.lock_id}`")
            time.sleep(0.2)

    def release_lock(self, stack: str, lock_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))

    def break_lock(self, stack: str, lock_id: str, by: str) -> LockInfo:
        with self.engine.begin() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.stack == stack)).first()
            if row is None:
                raise StateError(f"stack {stack!r} is not locked; nothing to unlock")
            if row.lock_id != lock_id:
                raise StateError(f"stack {stack!r} is locked with ID {row.lock_id}, not {lock_id} (held by "
                                 f"{row.holder}, {row.operation} since {row.acquired_at}); copy the ID from the "
                                 "'locked by' message")
            conn.execute(delete(LOCKS).where(LOCKS.c.stack == stack, LOCKS.c.lock_id == lock_id))
            info = _lock_info(row)
            head = conn.execute(select(STACKS.c.serial).where(STACKS.c.name == stack)).first()
            conn.execute(insert(HISTORY).values(
                stack=stack, serial=head[0] if head else 0, at=_now(), action="force-unlock", address=f"lock {lock_id}",
                before=json.dumps({"holder": info.holder, "operation": info.operation,
                                   "acquired_at": info.acquired_at}),
                after=json.dumps({"broken_by": by})))
        return info

    # writing

    def record_intents(self, stack: str, intents: list[Intent]) -> None:
        if not intents:
            return
        at = _now()
        with self.engine.begin() as conn:
            conn.execute(delete(INTENTS).where(INTENTS.c.stack == stack,
                                                 INTENTS.c.address.in_([i.address for i in intents])))
            self.rows_written += len(intents)
            conn.execute(insert(INTENTS), [
                {"stack": stack, "address": i.address, "kind": i.kind, "physical": i.physical, "action": str(i.action),
                 "properties": json.dumps(i.properties), "at": at, "endpoint": i.endpoint} for i in intents])

    @staticmethod
    def _bump(conn: Any, stack: str, outputs: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Advance the stack's serial (creating its head row) and set its outputs; returns the new serial and the
        outputs it had before."""
        head = conn.execute(select(STACKS.c.serial, STACKS.c.outputs).where(STACKS.c.name == stack)).first()
        if head is None:
            conn.execute(insert(STACKS).values(name=stack, serial=1, lineage=str(uuid.uuid4()),
                                               outputs=json.dumps(outputs or {})))
            return 1, {}
        values: dict[str, Any] = {"serial": head[0] + 1}
        if outputs is not None:
            values["outputs"] = json.dumps(outputs)
        conn.execute(STACKS.update().where(STACKS.c.name == stack).values(**values))
        return head[0] + 1, json.loads(head[1])

    def commit(self, stack: str, committed: list[Committed], outputs: dict[str, Any] | None = None) -> int:
        at = _now()
        dumps = json.dumps
        with self.engine.begin() as conn:
            serial, old_outputs = self._bump(conn, stack, outputs)
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
                 "after": dumps(c.record.properties) if c.record is not None else None}
                for c in committed
            ]
            if not journal:  # every serial leaves a line in the history, so a stale plan's serials can be found
                journal.append({"stack": stack, "serial": serial, "at": at, "action": "outputs",
                                "address": "(stack outputs)", "before": dumps(old_outputs),
                                "after": dumps(outputs) if outputs is not None else None})
            conn.execute(insert(HISTORY), journal)
            self.rows_written += 1 + len(rows) + len(journal) + len(addresses)
        return serial

    def forget(self, stack: str, addresses: list[str]) -> int:
        at = _now()
        with self.engine.begin() as conn:
            rows = conn.execute(select(RESOURCES).where(RESOURCES.c.stack == stack,
                                                        RESOURCES.c.address.in_(addresses))).all()
            missing = sorted(set(addresses) - {r.address for r in rows})
            if missing:
                raise StateError(f"no resource {missing[0]!r} in the state of stack {stack!r}; see `crane state list`")
            serial, _ = self._bump(conn, stack)
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
                 "before": r.properties, "after": None} for r in rows])
            self.rows_written += 1 + 3 * len(rows)
        return serial

    def unforget(self, stack: str, kind: str, physical: str) -> None:
        """Let crane manage a forgotten object again (`crane import`)."""
        with self.engine.begin() as conn:
            conn.execute(delete(FORGOTTEN).where(FORGOTTEN.c.stack == stack, FORGOTTEN.c.kind == kind,
                                                 FORGOTTEN.c.physical == physical))

    def move(self, stack: str, moves: list[tuple[str, str]]) -> int:
        at = _now()
        with self.engine.begin() as conn:
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
            serial, _ = self._bump(conn, stack)
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
                 "before": json.dumps({"address": old}), "after": json.dumps({"address": new})} for old, new in moves])
            self.rows_written += 1 + 3 * len(moves)
        return serial

    def close(self) -> None:
        self.engine.dispose()
