"""The lock of a stack, one kind per dialect: a row on SQLite (a holder that died on this host is recognised by its
pid), a session advisory lock on PostgreSQL (held by a connection of its own, so a holder killed with SIGKILL loses
it with its connection; the row beside it only names the holder, and a row whose advisory lock nobody holds is no
lock). Breaking a lock (`crane force-unlock`) leaves a line in the stack's history."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from crane_iac.errors import LockHeldError, StateError
from crane_iac.state.base import LockInfo, this_process
from crane_iac.state.sql.schema import HISTORY, LOCKS, STACKS, now


class Database(Protocol):
    """What a lock needs of the store it locks in."""

    engine: Engine
    connect_args: dict[str, Any]

    def writing(self) -> AbstractContextManager[Connection]: ...

    def redact(self, reason: object) -> str: ...


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(row.holder, row.operation, row.acquired_at, row.lock_id, row.host, row.pid)


def _held_message(stack: str, info: LockInfo) -> str:
    return (f"stack {stack!r} is locked by {info.holder} ({info.operation} since {info.acquired_at}), "
            f"lock ID {info.id}; wait for it, pass --lock-timeout SECONDS, or, if that run is gone, "
            f"run `crane force-unlock {info.id}`")

def advisory_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``name`` (a stack's lock, the schema migration)."""
    digest = hashlib.blake2b(f"crane:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)



class RowLocks:
    """A row per locked stack (SQLite): a holder that died on this host is recognised by its pid."""

    def __init__(self, store: Database) -> None:
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
                                                        operation=operation, acquired_at=now(), lock_id=lock_id))
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


class AdvisoryLocks:
    """PostgreSQL session advisory locks, one connection each: the lock lives exactly as long as the holder's
    connection, so a holder killed with SIGKILL loses it. A row beside it names the holder for ``lock_info``."""

    #: the advisory lock of a stack, as pg_locks shows it: a bigint key is split into classid (high) and objid (low)
    HELD = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = :hi AND objid = :lo "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")

    def __init__(self, store: Database) -> None:
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
                        conn.execute(insert(LOCKS).values(**values, acquired_at=now()))
                if got:
                    self.held[stack] = (lock_id, conn)
                    return lock_id
                info = self.info(stack)
                moment = time.monotonic()
                if moment >= deadline and info is not None:
                    raise LockHeldError(_held_message(stack, info))
                if moment >= deadline + 5:  # a session holds the key and never names itself: not a crane run
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
        stack=stack, serial=head[0] if head else 0, at=now(), action="force-unlock", address=f"lock {info.id}",
        before=json.dumps({"holder": info.holder, "operation": info.operation, "acquired_at": info.acquired_at}),
        after=json.dumps({"broken_by": by}), who=by, why=why))
