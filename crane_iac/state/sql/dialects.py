"""What differs by dialect below the store: SQLite's file, pragmas and write transactions; the INSERT that knows
ON CONFLICT; the password a URL carries (masked wherever a driver repeats it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from crane_iac.errors import StateError


def prepare_file(url: str, database: str | None) -> None:
    """Create the SQLite file (and its directory) readable by its owner only."""
    if not database or database == ":memory:":
        raise StateError(f"{url}: SQLite state needs a file: use sqlite:///PATH")
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
    except OSError as exc:
        raise StateError(f"cannot create the state database {path}: {exc.strerror}") from None


def sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # crane says when a transaction begins (sqlite_begin), not pysqlite
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_begin(conn: Connection) -> None:
    """A write transaction takes SQLite's write lock before it reads (the serial it then bumps)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("crane_write") else "BEGIN")


def dialect_insert(dialect: str, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (imported here: only the backend in use loads its dialect)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def password_of(url: str) -> str:
    """The password in ``url`` (to mask it wherever a driver repeats it), or ""."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return ""
    return str(parsed.password or parsed.query.get("password") or "")
