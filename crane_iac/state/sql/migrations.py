"""Bringing a state database of an older schema version forward, one step per version, in place."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, delete, insert, inspect, select, text

from crane_iac.objects import DEFAULT_ENDPOINT
from crane_iac.state.sql.schema import FORGOTTEN, META, RESOURCES, SCHEMA, SCHEMA_VERSION


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


def _v6_forgotten_per_endpoint(conn: Connection) -> None:
    """Version 6: the ``forgotten`` table keys on the endpoint too, so one name forgotten on two endpoints is two
    rows. PostgreSQL swaps the primary key in place; SQLite cannot, so the table is made again and its rows copied."""
    if conn.dialect.name == "postgresql":
        key = inspect(conn).get_pk_constraint("forgotten")["name"]
        conn.execute(text(f'ALTER TABLE forgotten DROP CONSTRAINT "{key}"'))
        conn.execute(text("ALTER TABLE forgotten ADD PRIMARY KEY (stack, kind, physical, endpoint)"))
        return
    conn.execute(text("ALTER TABLE forgotten RENAME TO forgotten_v5"))
    FORGOTTEN.create(conn)
    names = ", ".join(c.name for c in FORGOTTEN.columns)
    conn.execute(text(f"INSERT INTO forgotten ({names}) SELECT {names} FROM forgotten_v5"))
    conn.execute(text("DROP TABLE forgotten_v5"))


def _v8_endpoint_configs(conn: Connection) -> None:
    """Version 8: a record keeps its endpoint's type and settings as they were (a stack moved to another type of
    hypervisor replaces its objects); older records have none (""), and are taken to be on the endpoint's type now.
    The column ends as a new database's: PostgreSQL drops the default the rows were filled with; SQLite cannot, so
    the table is made again and its rows copied."""
    if "endpoint_config" in {c["name"] for c in inspect(conn).get_columns("resources")}:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE resources ADD COLUMN endpoint_config VARCHAR NOT NULL DEFAULT ''"))
        conn.execute(text("ALTER TABLE resources ALTER COLUMN endpoint_config DROP DEFAULT"))
        return
    conn.execute(text("ALTER TABLE resources RENAME TO resources_v7"))
    RESOURCES.create(conn)
    names = ", ".join(c.name for c in RESOURCES.columns if c.name != "endpoint_config")
    conn.execute(text(f"INSERT INTO resources ({names}, endpoint_config) SELECT {names}, '' FROM resources_v7"))
    conn.execute(text("DROP TABLE resources_v7"))


# Version 9 (the ``leaders`` and ``memory`` tables, for the autoscaler's replicas) only adds tables: create_all
# makes them, so it has no step. Nor has version 10 (the ``jobs`` table, the job pipeline's journal).

#: version → step that brings a database from the version before it.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2_lock_ids, 3: _v3_settings_and_authors,
                                                      4: _v4_intent_endpoints, 5: _v5_runs,
                                                      6: _v6_forgotten_per_endpoint, 8: _v8_endpoint_configs}


def stored_version(conn: Connection) -> int | None:
    """The database's schema version: None for an empty database, 0 for one older than versions."""
    if not conn.dialect.has_table(conn, "crane_meta"):
        return None
    row = conn.execute(select(META.c.value).where(META.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(conn: Connection, version: int | None) -> None:
    """Create the tables a database at ``version`` (None: an empty one) lacks, run the steps after ``version``, and
    mark it with the current version. The caller holds the write transaction and has refused a newer version."""
    SCHEMA.create_all(conn)
    if version is not None:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            if step in MIGRATIONS:
                MIGRATIONS[step](conn)
    conn.execute(delete(META).where(META.c.key == "schema_version"))
    conn.execute(insert(META).values(key="schema_version", value=str(SCHEMA_VERSION)))
