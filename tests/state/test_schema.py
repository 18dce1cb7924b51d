"""The state tables are SQLAlchemy Core; up to schema version 4 they were SQLModel classes, and the schema must not
move with them, so that every state database written before opens. SQLModel's DDL for SQLite and PostgreSQL is pinned
here (emitted by crane at schema version 4, before the change) with the defaults an INSERT that leaves a column out
writes; version 5 adds only what the pinned additions below say (history lines name their run, a ``runs`` table),
version 6 puts the endpoint into the forgotten objects' key, version 7 adds the address pools' tables, version 8 a
record's endpoint type and settings (``endpoint_config``), and version 9 the autoscaler replicas' leases and the
loops' memory. A database made with the version 4 or 5 DDL migrates in place, keeps every row, plans and takes
writes."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from crane_iac.objects import Action, Outcome, Recorded
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed, Intent, RunInfo
from crane_iac.state.sql import SCHEMA, SCHEMA_VERSION
from tests.conftest import ProjectDir

#: CreateTable/CreateIndex of SQLModel's tables for SQLite (what .crane/state.db's sqlite_master holds)
SQLITE_DDL = """
CREATE TABLE crane_meta (
    "key" VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    PRIMARY KEY ("key")
);
CREATE TABLE stacks (
    name VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    lineage VARCHAR NOT NULL,
    outputs VARCHAR NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE resources (
    stack VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    outputs VARCHAR NOT NULL,
    dependencies VARCHAR NOT NULL,
    protect BOOLEAN NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, address)
);
CREATE TABLE intents (
    stack VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, address)
);
CREATE TABLE history (
    id INTEGER NOT NULL,
    stack VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    at VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    "before" VARCHAR,
    "after" VARCHAR,
    who VARCHAR NOT NULL,
    why VARCHAR NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_history_stack ON history (stack);
CREATE TABLE locks (
    stack VARCHAR NOT NULL,
    holder VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    pid INTEGER NOT NULL,
    operation VARCHAR NOT NULL,
    acquired_at VARCHAR NOT NULL,
    lock_id VARCHAR NOT NULL,
    PRIMARY KEY (stack)
);
CREATE TABLE forgotten (
    stack VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, kind, physical)
);
CREATE TABLE settings (
    stack VARCHAR NOT NULL,
    "key" VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    who VARCHAR NOT NULL,
    why VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (stack, "key")
);
"""

#: the same for PostgreSQL
POSTGRESQL_DDL = """
CREATE TABLE crane_meta (
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    PRIMARY KEY (key)
);
CREATE TABLE stacks (
    name VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    lineage VARCHAR NOT NULL,
    outputs VARCHAR NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE resources (
    stack VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    outputs VARCHAR NOT NULL,
    dependencies VARCHAR NOT NULL,
    protect BOOLEAN NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, address)
);
CREATE TABLE intents (
    stack VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, address)
);
CREATE TABLE history (
    id SERIAL NOT NULL,
    stack VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    at VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    before VARCHAR,
    after VARCHAR,
    who VARCHAR NOT NULL,
    why VARCHAR NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_history_stack ON history (stack);
CREATE TABLE locks (
    stack VARCHAR NOT NULL,
    holder VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    pid INTEGER NOT NULL,
    operation VARCHAR NOT NULL,
    acquired_at VARCHAR NOT NULL,
    lock_id VARCHAR NOT NULL,
    PRIMARY KEY (stack)
);
CREATE TABLE forgotten (
    stack VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    physical VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    properties VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    PRIMARY KEY (stack, kind, physical)
);
CREATE TABLE settings (
    stack VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    who VARCHAR NOT NULL,
    why VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (stack, key)
);
"""

#: what version 5 adds to version 4's DDL (the same for both dialects): a history line names the run that wrote it,
#: and the runs themselves
V5_RUNS = """
CREATE TABLE runs (
    stack VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    who VARCHAR NOT NULL,
    operation VARCHAR NOT NULL,
    started_at VARCHAR NOT NULL,
    PRIMARY KEY (stack, id)
);
"""


def version_5(v4_ddl: str) -> str:
    """Version 4's DDL with version 5's additions: the history's new column last, the runs table after the rest."""
    head, marker, tail = v4_ddl.partition("why VARCHAR NOT NULL,\n    PRIMARY KEY (id)")
    assert marker
    return head + "why VARCHAR NOT NULL,\n    run VARCHAR NOT NULL,\n    PRIMARY KEY (id)" + tail + V5_RUNS


SQLITE_V5_DDL = version_5(SQLITE_DDL)
POSTGRESQL_V5_DDL = version_5(POSTGRESQL_DDL)


def version_6(v5_ddl: str) -> str:
    """Version 5's DDL with version 6's change: one name forgotten on two endpoints is two rows."""
    head, marker, tail = v5_ddl.partition("endpoint VARCHAR NOT NULL,\n    PRIMARY KEY (stack, kind, physical)")
    assert marker
    return head + "endpoint VARCHAR NOT NULL,\n    PRIMARY KEY (stack, kind, physical, endpoint)" + tail


SQLITE_V6_DDL = version_6(SQLITE_V5_DDL)
POSTGRESQL_V6_DDL = version_6(POSTGRESQL_V5_DDL)

#: what version 7 adds (the same for both dialects): address pools and their leases, whose primary key is what
#: forbids handing one value out twice
V7_POOLS = """;
CREATE TABLE ip_pools (
    name VARCHAR NOT NULL,
    family INTEGER NOT NULL,
    network VARCHAR NOT NULL,
    reserved VARCHAR NOT NULL,
    subnet_prefixlen INTEGER,
    parent VARCHAR NOT NULL,
    declared_by VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE ip_leases (
    pool VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    stack VARCHAR NOT NULL,
    address VARCHAR NOT NULL,
    slot VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    PRIMARY KEY (pool, value),
    CONSTRAINT ip_leases_holder UNIQUE (pool, stack, address, slot)
);
CREATE INDEX ix_ip_leases_stack ON ip_leases (stack);
"""
SQLITE_V7_DDL = SQLITE_V6_DDL + V7_POOLS
POSTGRESQL_V7_DDL = POSTGRESQL_V6_DDL + V7_POOLS


def version_8(v7_ddl: str) -> str:
    """Version 7's DDL with version 8's addition: a record keeps its endpoint's type and settings (last column)."""
    marker = "protect BOOLEAN NOT NULL,\n    endpoint VARCHAR NOT NULL,\n"
    assert v7_ddl.count(marker) == 1
    return v7_ddl.replace(marker, marker + "    endpoint_config VARCHAR NOT NULL,\n")


SQLITE_V8_DDL = version_8(SQLITE_V7_DDL)
POSTGRESQL_V8_DDL = version_8(POSTGRESQL_V7_DDL)


def version_9(v8_ddl: str, key: str) -> str:
    """Version 8's DDL with version 9's tables: the autoscaler replicas' leases and the loops' memory."""
    return v8_ddl + f""";
CREATE TABLE leaders (
    stack VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    token INTEGER NOT NULL,
    holder_id VARCHAR NOT NULL,
    holder VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    pid INTEGER NOT NULL,
    since VARCHAR NOT NULL,
    expires_at FLOAT NOT NULL,
    PRIMARY KEY (stack, role)
);
CREATE TABLE memory (
    stack VARCHAR NOT NULL,
    {key} VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    token INTEGER NOT NULL,
    at VARCHAR NOT NULL,
    PRIMARY KEY (stack, {key})
)
"""


SQLITE_V9_DDL = version_9(SQLITE_V8_DDL, '"key"')
POSTGRESQL_V9_DDL = version_9(POSTGRESQL_V8_DDL, "key")


def version_10(v9_ddl: str) -> str:
    """Version 9's DDL with version 10's table: the job pipeline's journal."""
    return v9_ddl + """;
CREATE TABLE jobs (
    stack VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    record VARCHAR NOT NULL,
    at VARCHAR NOT NULL,
    PRIMARY KEY (stack, name)
)
"""


SQLITE_V10_DDL = version_10(SQLITE_V9_DDL)
POSTGRESQL_V10_DDL = version_10(POSTGRESQL_V9_DDL)


#: table.column → the value an INSERT that leaves the column out writes (SQLModel's field defaults)
DEFAULTS = {
    "stacks.serial": 0, "stacks.outputs": "{}",
    "resources.outputs": "{}", "resources.dependencies": "[]", "resources.protect": False,
    "resources.endpoint": "default", "resources.endpoint_config": "",
    "intents.properties": "{}", "intents.endpoint": "default",
    "history.who": "", "history.why": "", "history.run": "",
    "locks.lock_id": "",
    "forgotten.properties": "{}", "forgotten.endpoint": "default",
    "ip_pools.reserved": "[]", "ip_pools.parent": "", "ip_leases.state": "planned",
}


def normal(ddl: str) -> list[str]:
    """The statements of ``ddl``, whitespace collapsed (SQLAlchemy ends each column's line with a space)."""
    return [" ".join(s.split()) for s in ddl.split(";") if s.strip()]


def emitted(dialect: sqlalchemy.engine.Dialect) -> str:
    statements = []
    for table in SCHEMA.tables.values():
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(index).compile(dialect=dialect))
                       for index in sorted(table.indexes, key=lambda i: str(i.name))]
    return ";".join(statements)


@pytest.mark.parametrize(("dialect", "pinned"), [(sqlite.dialect(), SQLITE_V10_DDL),
                                                  (postgresql.dialect(), POSTGRESQL_V10_DDL)],
                         ids=["sqlite", "postgresql"])
def test_core_emits_the_ddl_sqlmodel_did(dialect: sqlalchemy.engine.Dialect, pinned: str) -> None:
    assert normal(emitted(dialect)) == normal(pinned)


def test_columns_left_out_get_the_defaults_sqlmodel_gave() -> None:
    found = {f"{t.name}.{c.name}": c.default.arg for t in SCHEMA.tables.values() for c in t.columns  # type: ignore[attr-defined]
             if c.default is not None}
    assert found == DEFAULTS and not [c for t in SCHEMA.tables.values() for c in t.columns if c.server_default]


def describe(url: str) -> list[Any]:
    """The database's catalog: every table, column (type, nullability, default), key and index."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                return [(*r[:3], r[3] and " ".join(r[3].split())) for r in conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")]
            columns = conn.exec_driver_sql(
                "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3").all()
            indexes = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                                           "ORDER BY 1").all()
            keys = conn.exec_driver_sql(
                "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2").all()
            return [*columns, *indexes, *keys]
    finally:
        engine.dispose()


def run_script(url: str, ddl: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


#: rows as crane at schema version 4 wrote them (the demo stack's first apply, abridged)
OLD_ROWS = """
INSERT INTO crane_meta VALUES ('schema_version', '4');
INSERT INTO stacks VALUES ('demo', 1, '6c1e0a3e-1d4b-4f53-9a43-6c1b9b2f0c11', '{"lan": "10.60.0.0/24"}');
INSERT INTO resources VALUES ('demo', 'network.lan', 'network', 'lan', '{"mode": "nat"}', '{"bridge": "virbr1"}',
                              '[]', false, 'default');
INSERT INTO resources VALUES ('demo', 'vm.web-1', 'vm', 'web-1', '{"memory_mib": 512}', '{"uuid": "u-1"}',
                              '["network.lan"]', true, 'default');
INSERT INTO history (stack, serial, at, action, address, "before", "after", who, why)
    VALUES ('demo', 1, '2025-06-01T00:00:00+00:00', 'create', 'vm.web-1', NULL, '{"memory_mib": 512}', '', '');
"""


def columns(url: str) -> dict[str, list[str]]:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            found = sqlalchemy.inspect(conn)
            return {t: [c["name"] for c in found.get_columns(t)] for t in found.get_table_names()}
    finally:
        engine.dispose()


def test_a_database_with_the_version_4_schema_migrates_and_works(state_url: str) -> None:
    run_script(state_url, SQLITE_DDL if state_url.startswith("sqlite") else POSTGRESQL_DDL)
    run_script(state_url, OLD_ROWS)
    old = columns(state_url)
    store = open_store(state_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        state = store.read("demo")
        assert (state.serial, state.outputs) == (1, {"lan": "10.60.0.0/24"})
        assert state.resources["vm.web-1"] == Recorded("vm.web-1", "vm", "web-1", {"memory_mib": 512}, {"uuid": "u-1"},
                                                      ["network.lan"], True, "default")
        store.record_intents("demo", [Intent("vm.web-2", "vm", "web-2", Action.CREATE, {"memory_mib": 256})])
        store.record_intents("demo", [Intent("vm.web-2", "vm", "web-2", Action.CREATE, {"memory_mib": 512})])
        assert store.commit("demo", [Committed("vm.web-2", Outcome.CREATE,
                                               Recorded("vm.web-2", "vm", "web-2", {"memory_mib": 512}))]) == 2
        assert store.set_setting("demo", "web", 3, by="me", why="load") == 3
        assert store.forget("demo", ["network.lan"]) == 4
        store.release_lock("demo", store.acquire_lock("demo", "apply"))
        state = store.read("demo")
        assert sorted(state.resources) == ["vm.web-1", "vm.web-2"] and state.intents == {}
        assert [f.address for f in state.forgotten] == ["network.lan"] and state.settings["web"].value == 3
        assert [h.action for h in store.history("demo")] == ["create", "create", "setting", "forget"]
        assert store.history("demo")[0].run is None  # a line written before runs were kept names none
        run = RunInfo(store.acquire_lock("demo", "apply"), "me@here pid 1", "apply", "2025-06-02T00:00:00+00:00")
        assert store.commit("demo", [], {"lan": "10.60.1.0/24"}, run=run) == 5
        assert store.history("demo")[-1].run == run
    finally:
        store.close()
    # the migrations only added: the history's run column, the runs table, the address pools' tables, the
    # records' endpoint_config, the replicas' leases and memory, and the jobs' journal
    added = {"history": ["run"], "resources": ["endpoint_config"]}
    assert columns(state_url) == {**{t: [*c, *added.get(t, [])] for t, c in old.items()},
                                  "runs": ["stack", "id", "who", "operation", "started_at"],
                                  "ip_pools": ["name", "family", "network", "reserved", "subnet_prefixlen", "parent",
                                               "declared_by", "at"],
                                  "ip_leases": ["pool", "value", "stack", "address", "slot", "state", "at"],
                                  "leaders": ["stack", "role", "token", "holder_id", "holder", "host", "pid", "since",
                                              "expires_at"],
                                  "memory": ["stack", "key", "value", "token", "at"],
                                  "jobs": ["stack", "name", "record", "at"]}


#: rows as crane at schema version 5 wrote them: a tombstone of `crane state rm` among them
V5_ROWS = """
INSERT INTO crane_meta VALUES ('schema_version', '5');
INSERT INTO stacks VALUES ('demo', 1, '6c1e0a3e-1d4b-4f53-9a43-6c1b9b2f0c11', '{}');
INSERT INTO resources VALUES ('demo', 'network.lan', 'network', 'lan', '{"mode": "nat"}', '{"bridge": "virbr1"}',
                              '[]', false, 'default');
INSERT INTO forgotten VALUES ('demo', 'volume', 'data', 'volume.data', '{"capacity_gib": 4}',
                              '2025-06-01T00:00:00+00:00', 'host-a');
INSERT INTO runs VALUES ('demo', 'r-1', 'me@here pid 1', 'apply', '2025-06-01T00:00:00+00:00');
INSERT INTO history (stack, serial, at, action, address, "before", "after", who, why, run)
    VALUES ('demo', 1, '2025-06-01T00:00:00+00:00', 'forget', 'volume.data', '{"capacity_gib": 4}', NULL, '', '',
            'r-1');
"""


def test_a_database_with_the_version_5_schema_migrates_and_works(state_url: str) -> None:
    """Version 6 keys the forgotten objects on the endpoint: the tombstone a version 5 database holds stays, the
    catalog becomes exactly a new database's, and the same name can then be forgotten on a second endpoint."""
    sqlite_url = state_url.startswith("sqlite")
    run_script(state_url, SQLITE_V10_DDL if sqlite_url else POSTGRESQL_V10_DDL)
    current = describe(state_url)  # what a database made at version 10 looks like
    run_script(state_url, ";".join(f"DROP TABLE {name}" for name in SCHEMA.tables))
    run_script(state_url, SQLITE_V5_DDL if sqlite_url else POSTGRESQL_V5_DDL)
    run_script(state_url, V5_ROWS)
    store = open_store(state_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 10
        assert store.read("demo").resources["network.lan"].endpoint_config == ""  # recorded before version 8
        (kept,) = store.read("demo").forgotten
        assert kept == Recorded("volume.data", "volume", "data", {"capacity_gib": 4}, endpoint="host-a")
        data_b = Recorded("volume.data-b", "volume", "data", {"capacity_gib": 8}, endpoint="host-b")
        assert store.commit("demo", [Committed(data_b.address, Outcome.IMPORT, data_b)]) == 2
        assert store.forget("demo", [data_b.address]) == 3
        assert sorted((f.endpoint, f.address) for f in store.read("demo").forgotten) == [
            ("host-a", "volume.data"), ("host-b", "volume.data-b")]
        assert list(store.read("demo").resources) == ["network.lan"]
        assert [(h.action, h.run and h.run.id) for h in store.history("demo")] == [
            ("forget", "r-1"), ("import", None), ("forget", None)]
    finally:
        store.close()
    assert describe(state_url) == current


def test_a_new_database_gets_the_current_schema(state_url: str) -> None:
    run_script(state_url, SQLITE_V10_DDL if state_url.startswith("sqlite") else POSTGRESQL_V10_DDL)
    old = describe(state_url)
    run_script(state_url, ";".join(f"DROP TABLE {name}" for name in SCHEMA.tables))
    open_store(state_url).close()
    assert describe(state_url) == old and len(old) >= len(SCHEMA.tables)


#: rows as crane at schema version 8 wrote them: an autoscaled tier's size
V8_ROWS = """
INSERT INTO crane_meta VALUES ('schema_version', '8');
INSERT INTO stacks VALUES ('shop', 2, '6c1e0a3e-1d4b-4f53-9a43-6c1b9b2f0c11', '{}');
INSERT INTO settings VALUES ('shop', 'appdomain.shop/web.size', '3', 'autoscaler', 'scale-out: memory',
                             '2025-06-01T00:00:00+00:00', 2);
"""


def test_a_database_with_the_version_8_schema_gains_the_replicas_tables(state_url: str) -> None:
    """Version 9 adds the leases of the autoscaler's replicas and the loops' memory: a version 8 database keeps its
    settings, gets the tables as a new database has them, and a loop leads on it and remembers."""
    sqlite_url = state_url.startswith("sqlite")
    run_script(state_url, SQLITE_V10_DDL if sqlite_url else POSTGRESQL_V10_DDL)
    current = describe(state_url)
    run_script(state_url, ";".join(f"DROP TABLE {name}" for name in SCHEMA.tables))
    run_script(state_url, SQLITE_V8_DDL if sqlite_url else POSTGRESQL_V8_DDL)
    run_script(state_url, V8_ROWS)
    store = open_store(state_url)
    try:
        assert store.schema_version() == 10 and store.settings("shop")["appdomain.shop/web.size"].value == 3
        assert store.memory("shop") == {} and store.leader("shop", "autoscale") is None
        fence = store.lead("shop", "autoscale", holder_id="a", ttl=30).fence
        assert store.set_setting("shop", "appdomain.shop/web.size", 4, by="autoscaler", why="scale-out",
                                 fence=fence, memory={"appdomain.shop/web.size": {"history": {}}}) == 3
        assert store.memory("shop") == {"appdomain.shop/web.size": {"history": {}}}
    finally:
        store.close()
    assert describe(state_url) == current


def test_a_state_db_written_before_plans_as_a_no_op(project: ProjectDir) -> None:
    """The sandbox project's state, written again into a file with the old DDL (as crane 0.1 kept it), plans with
    no changes and applies the next change."""
    project.write_stack(STACK.format(memory=512))
    assert project.crane("apply", "--auto-approve").code == 0
    path = project.root / ".crane" / "state.db"
    old_tables = [t for t in SCHEMA.tables if t != "runs"]
    with sqlite3.connect(path) as db:  # the rows version 4 had room for
        rows = {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in old_tables}
        rows["history"] = [r[:-1] for r in rows["history"]]
        rows["resources"] = [r[:-1] for r in rows["resources"]]  # endpoint_config: since version 8
        rows["crane_meta"] = [("schema_version", "4")]
    db.close()
    path.unlink()
    with sqlite3.connect(path) as db:
        db.executescript(SQLITE_DDL)
        for table, values in rows.items():
            if values:
                db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})", values)
    db.close()
    again = project.crane("plan", "--detailed-exitcode")
    assert (again.code, again.out.strip()) == (0, "No changes. The infrastructure matches the stack."), again
    before = describe(f"sqlite:///{path}")  # migrated to the current version by that plan, once
    project.write_stack(STACK.format(memory=1024))
    assert project.crane("apply", "--auto-approve").code == 0
    assert project.crane("plan", "--detailed-exitcode").code == 0
    assert describe(f"sqlite:///{path}") == before


STACK = """
from crane_iac import VM, Network, Volume, export

lan = Network("lan", mode="nat", ipv4="10.61.0.0/24")
disk = Volume("web-1-root", capacity_gib=4)
web = VM("web-1", vcpus=1, memory_mib={memory}, max_memory_mib=2048, networks=[lan], volumes=[disk])
export("web-1-uuid", web.uuid)
"""
