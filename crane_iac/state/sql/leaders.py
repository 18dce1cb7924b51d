"""Replicated loops on one state database: a lease row per (stack, role) with a fencing token, and what the loops keep
between their periods.

The lease (``LEADERS``) is a row, not a session's advisory lock: it outlives any one connection (a pooled one, a
dropped one that comes back), and its token, which grows by one each time the lease changes hands, fences the
leader's writes: ``check`` runs inside the write's transaction, after locking the lease row (``FOR UPDATE`` on
PostgreSQL; SQLite's write transaction already excludes every other writer), so a takeover either commits before the
write, which then sees the new token and writes nothing, or after it. Time is the database's clock, so replicas on
machines whose clocks differ agree on when a lease lapses. docs/decisions/autoscaler-replicas.md says why.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text

from crane_iac.errors import FencedError, StateError
from crane_iac.state.base import Fence, Leader, LockInfo, this_process
from crane_iac.state.sql.dialects import dialect_insert
from crane_iac.state.sql.schema import LEADERS, MEMORY, now

#: the database's clock, in seconds since the epoch
_CLOCK = {"postgresql": text("SELECT extract(epoch FROM clock_timestamp())"),
          "sqlite": text("SELECT (julianday('now') - 2440587.5) * 86400.0")}


def clock(conn: Connection) -> float:
    return float(conn.execute(_CLOCK[conn.dialect.name]).scalar_one())


def _leader(row: Any, at: float) -> Leader:
    return Leader(row.role, row.token, row.holder_id, row.holder, row.host, row.pid, row.since, row.expires_at - at)


def _row(conn: Connection, stack: str, role: str, *, lock: bool) -> Any:
    query = select(LEADERS).where(LEADERS.c.stack == stack, LEADERS.c.role == role)
    return conn.execute(query.with_for_update() if lock else query).first()


def _gone(row: Any) -> bool:
    """Whether the holder was a process of this host that is no longer running (SQLite: one machine)."""
    return LockInfo(row.holder, "", "", host=row.host, pid=row.pid).holder_running_here() is False


def lead(conn: Connection, dialect: str, stack: str, role: str, holder_id: str, ttl: float) -> Leader:
    """Take or renew the lease (``StateStore.lead``), in the caller's write transaction."""
    at = clock(conn)
    row = _row(conn, stack, role, lock=True)
    mine = {"holder_id": holder_id, "holder": this_process(), "host": socket.gethostname(), "pid": os.getpid(),
            "expires_at": at + ttl}
    if row is None:  # the first: replicas racing to create the row all end up locking it
        conn.execute(dialect_insert(dialect, LEADERS).values(stack=stack, role=role, token=1, since=now(), **mine)
                     .on_conflict_do_nothing(index_elements=[LEADERS.c.stack, LEADERS.c.role]))
        return _leader(_row(conn, stack, role, lock=True), at)
    where = (LEADERS.c.stack == stack) & (LEADERS.c.role == role)
    if row.holder_id == holder_id:  # renewed: nobody took it meanwhile (the holder would differ), same token
        conn.execute(LEADERS.update().where(where).values(expires_at=at + ttl))
    elif row.expires_at <= at or (dialect == "sqlite" and _gone(row)):
        conn.execute(LEADERS.update().where(where).values(token=row.token + 1, since=now(), **mine))
    else:
        return _leader(row, at)
    return _leader(_row(conn, stack, role, lock=False), at)


def leader(conn: Connection, stack: str, role: str) -> Leader | None:
    row = _row(conn, stack, role, lock=False)
    return None if row is None else _leader(row, clock(conn))


def resign(conn: Connection, stack: str, role: str, holder_id: str) -> None:
    conn.execute(LEADERS.update().where(LEADERS.c.stack == stack, LEADERS.c.role == role,
                                        LEADERS.c.holder_id == holder_id).values(expires_at=clock(conn)))


def check(conn: Connection, stack: str, fence: Fence) -> None:
    """Refuse the write whose transaction this is unless ``fence`` is the lease's token (locked until the end)."""
    row = _row(conn, stack, fence.role, lock=True)
    if row is None or row.token != fence.token:
        holder = f"{row.holder} since {row.since} (token {row.token})" if row is not None else "nobody"
        raise FencedError(f"stack {stack!r}: this {fence.role} (token {fence.token}) no longer leads: {holder} "
                          f"took the lease; nothing was written")


def remember(conn: Connection, stack: str, memory: Mapping[str, Any], token: int) -> None:
    """Keep ``memory``'s values by key (each replaces the one before)."""
    if not memory:
        return
    try:
        values = {k: json.dumps(v, allow_nan=False) for k, v in memory.items()}
    except (TypeError, ValueError) as exc:
        raise StateError(f"what the loops of stack {stack!r} keep must be JSON: {exc}") from None
    at = now()
    conn.execute(delete(MEMORY).where(MEMORY.c.stack == stack, MEMORY.c.key.in_(list(values))))
    conn.execute(insert(MEMORY), [{"stack": stack, "key": k, "value": v, "token": token, "at": at}
                                  for k, v in values.items()])


def memory(conn: Connection, stack: str) -> dict[str, Any]:
    return {r.key: json.loads(r.value) for r in conn.execute(select(MEMORY.c.key, MEMORY.c.value)
                                                              .where(MEMORY.c.stack == stack))}
