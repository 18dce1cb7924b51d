"""The state database's tables (SQLAlchemy Core) and the schema version they make.

The tables are Core ``Table``s, not SQLModel classes, for start-up time: every query was Core already, and SQLModel
(with the ORM and the pydantic models it builds) made importing this module take 0.94 s of a 1.37 s no-op
``crane plan`` of the demo stack; with Core it takes 0.48 s and the plan 1.09 s (medians of 5 on the 2-core sandbox).
The schema is the one SQLModel declared (tests/state/test_schema.py pins its DDL), so older databases open unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, UniqueConstraint

from crane_iac.objects import DEFAULT_ENDPOINT

SCHEMA_VERSION = 10


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
                  _text("endpoint", default=DEFAULT_ENDPOINT), _text("endpoint_config", default=""))
INTENTS = Table("intents", SCHEMA, _text("stack", primary_key=True), _text("address", primary_key=True),
                _text("kind"), _text("physical"), _text("action"), _text("properties", default="{}"), _text("at"),
                _text("endpoint", default=DEFAULT_ENDPOINT))
HISTORY = Table("history", SCHEMA, Column("id", Integer(), primary_key=True), _text("stack", index=True),
                _int("serial"), _text("at"), _text("action"), _text("address"), _text("before", nullable=True),
                _text("after", nullable=True), _text("who", default=""), _text("why", default=""),
                _text("run", default=""))
LOCKS = Table("locks", SCHEMA, _text("stack", primary_key=True), _text("holder"), _text("host"), _int("pid"),
              _text("operation"), _text("acquired_at"), _text("lock_id", default=""))
#: objects `crane state rm` let go of: they stay on the hypervisor and crane leaves them alone; one name may be
#: forgotten on several endpoints
FORGOTTEN = Table("forgotten", SCHEMA, _text("stack", primary_key=True), _text("kind", primary_key=True),
                  _text("physical", primary_key=True), _text("address"), _text("properties", default="{}"),
                  _text("at"), _text("endpoint", default=DEFAULT_ENDPOINT, primary_key=True))
#: durable per-stack settings (the autoscaler's desired size of a tier), with who set them and why
SETTINGS = Table("settings", SCHEMA, _text("stack", primary_key=True), _text("key", primary_key=True),
                 _text("value"), _text("who"), _text("why"), _text("at"), _int("serial"))
#: the locked runs (an apply, a refresh…) whose writes history lines name by ``run``: who ran what, since when
RUNS = Table("runs", SCHEMA, _text("stack", primary_key=True), _text("id", primary_key=True), _text("who"),
             _text("operation"), _text("started_at"))
#: address pools, shared by every stack of the state database: a pool is declared by a stack (``declared_by``); every
#: other stack that declares it must declare the same range; a network's own addresses are a pool too, named after
#: the pool its subnet came from and the subnet (``parent``)
IP_POOLS = Table("ip_pools", SCHEMA, _text("name", primary_key=True), _int("family"), _text("network"),
                 _text("reserved", default="[]"), Column("subnet_prefixlen", Integer(), nullable=True),
                 _text("parent", default=""), _text("declared_by"), _text("at"))
#: the leases pools hand out. The primary key (pool, value) is what forbids handing one value out twice, whatever
#: two runs do at once; a holder (stack, address, slot) holds one value of a pool. A lease is ``planned`` from the
#: plan that chose it until the apply that makes its resource ``bound``s it
IP_LEASES = Table("ip_leases", SCHEMA, _text("pool", primary_key=True), _text("value", primary_key=True),
                  _text("stack", index=True), _text("address"), _text("slot"), _text("state", default="planned"),
                  _text("at"), UniqueConstraint("pool", "stack", "address", "slot", name="ip_leases_holder"))
#: who leads a stack's replicated loop (``role``: the autoscaler's) and until when: a lease, renewed by its holder,
#: that lapses at ``expires_at`` (seconds since the epoch by the database's clock). ``token`` grows by one each time
#: the lease changes hands: it fences the leader's writes (a write carrying a lower token is refused). Not state: a
#: migration to another store leaves it behind, as it does the locks (schema 9)
LEADERS = Table("leaders", SCHEMA, _text("stack", primary_key=True), _text("role", primary_key=True),
                _int("token"), _text("holder_id"), _text("holder"), _text("host"), _int("pid"), _text("since"),
                Column("expires_at", Float(), nullable=False))
#: what a loop keeps between its periods (the autoscaler's decision History of a tier), by key, as JSON, with the
#: leader's token that wrote it: a loop restarted or taken over carries on from it (schema 9)
MEMORY = Table("memory", SCHEMA, _text("stack", primary_key=True), _text("key", primary_key=True), _text("value"),
               _int("token"), _text("at"))
#: the job pipeline's journal (``crane job run``): one row per job of a stack, its record (steps, status, times) as
#: JSON, rewritten at every step; each step also writes a ``job`` line in the stack's history (schema 10)
JOBS = Table("jobs", SCHEMA, _text("stack", primary_key=True), _text("name", primary_key=True), _text("record"),
             _text("at"))
#: the tables that hold a stack's state (locks and leaders are not state)
STATE_TABLES = {STACKS: STACKS.c.name, RESOURCES: RESOURCES.c.stack, INTENTS: INTENTS.c.stack,
                HISTORY: HISTORY.c.stack, FORGOTTEN: FORGOTTEN.c.stack, SETTINGS: SETTINGS.c.stack,
                RUNS: RUNS.c.stack, MEMORY: MEMORY.c.stack, JOBS: JOBS.c.stack}


def now() -> str:
    """The time a row is written, as every ``at`` column holds it (ISO 8601, UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
