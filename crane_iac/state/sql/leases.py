"""Address pools and their leases in the state database, each call inside a write transaction the store opens.

What forbids handing one address out twice is the database, not a check in Python: the lease table's primary key
is (pool, value), and a value is chosen and inserted in the same transaction, after the pool's row is locked
(SQLite: the transaction is ``BEGIN IMMEDIATE``, so writers take turns; PostgreSQL: ``SELECT … FOR UPDATE`` on
the pool's row, so runs allocating from one pool take turns and runs on other pools do not wait). The choice itself
is the pure allocator's (crane_iac/ipam/pools.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, and_, delete, select, text, update

from crane_iac.errors import StateError
from crane_iac.ipam.pools import Holder, IpamError, Lease, LeaseRecord, PoolRecord, PoolSpec, Want, allocate
from crane_iac.state.sql.dialects import dialect_insert
from crane_iac.state.sql.schema import IP_LEASES, IP_POOLS, RESOURCES, now

#: the advisory lock a PostgreSQL run holds while it declares a new pool (so two new pools that overlap are not
#: both let in by two runs at once); any number, crane's own
_NEW_POOL_LOCK = 0x6372616E


def lease(conn: Connection, dialect: str, stack: str, pools: Sequence[PoolSpec],
          wants: Sequence[tuple[str, Want]], *, parents: dict[str, str] | None = None) -> dict[tuple[str, Holder], str]:
    """The value of each (pool, want): a holder's lease where it has one, else a new one, written as ``planned``.
    ``pools`` are the pools the wants name, declared by ``stack`` (``parents``: a network's own pool → the pool
    its subnet came from). A pool another stack declares differently, one that overlaps another, an explicit value
    the pool cannot give or an exhausted pool is an IpamError, and nothing is written."""
    by_name = {spec.name: spec for spec in pools}
    for spec in pools:
        _declare(conn, dialect, stack, spec, (parents or {}).get(spec.name, ""))
    chosen: dict[tuple[str, Holder], str] = {}
    grouped: dict[str, list[Want]] = {}
    for pool, want in wants:
        grouped.setdefault(pool, []).append(want)
    for pool, asked in grouped.items():
        held = [Lease(pool, row.value, Holder(row.stack, row.address, row.slot)) for row in _leases(conn, pool)]
        known = {lease.holder: lease.value for lease in held}
        values = allocate(by_name[pool], held, asked)
        new = [{"pool": pool, "value": value, "stack": h.stack, "address": h.address, "slot": h.slot,
                "state": "planned", "at": now()} for h, value in values.items() if h not in known]
        for h, value in values.items():  # a holder that names another value than its lease moves to it
            if h in known and known[h] != value:
                conn.execute(update(IP_LEASES).where(and_(
                    IP_LEASES.c.pool == pool, IP_LEASES.c.stack == h.stack, IP_LEASES.c.address == h.address,
                    IP_LEASES.c.slot == h.slot)).values(value=value, at=now()))
        if new:
            conn.execute(IP_LEASES.insert(), new)
        chosen.update(((pool, holder), value) for holder, value in values.items())
    return chosen


def _declare(conn: Connection, dialect: str, stack: str, spec: PoolSpec, parent: str) -> None:
    """Lock the pool's row, declaring the pool first if no stack has; a stack that declares it otherwise, or a new
    pool that overlaps another, is an IpamError."""
    row = _locked(conn, spec.name)
    if row is None:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _NEW_POOL_LOCK})
        if not parent:
            for other in pools(conn):
                if other.parent or other.name == spec.name:
                    continue
                other_spec = PoolSpec.parse(other.name, other.network)
                if spec.overlaps(other_spec):
                    raise IpamError(f"pool {spec.name!r} ({spec.network}) overlaps pool {other.name!r} "
                                    f"({other.network}), declared by stack {other.declared_by}: give it a range "
                                    "of its own, or use that pool")
        conn.execute(dialect_insert(dialect, IP_POOLS).values(
            name=spec.name, family=spec.family, network=str(spec.network),
            reserved=json.dumps([str(r) for r in spec.reserved]), subnet_prefixlen=spec.subnet_prefixlen,
            parent=parent, declared_by=stack, at=now()).on_conflict_do_nothing(index_elements=[IP_POOLS.c.name]))
        row = _locked(conn, spec.name)
        assert row is not None
    declared = (row.network, sorted(row.reserved), row.subnet_prefixlen)
    if declared != (str(spec.network), sorted(str(r) for r in spec.reserved), spec.subnet_prefixlen):
        raise IpamError(
            f"pool {spec.name!r} is declared by stack {row.declared_by} as {row.network} (reserved "
            f"{row.reserved or 'none'}, subnets /{row.subnet_prefixlen or '-'}), and by stack {stack} as "
            f"{spec.network} (reserved {[str(r) for r in spec.reserved] or 'none'}, subnets "
            f"/{spec.subnet_prefixlen or '-'}): a pool is shared by every stack, so declare it alike, or give "
            "one of them another name")


def _locked(conn: Connection, name: str) -> PoolRecord | None:
    found = conn.execute(select(IP_POOLS).where(IP_POOLS.c.name == name).with_for_update()).first()
    return _pool_row(found) if found is not None else None


def _pool_row(row: object) -> PoolRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return PoolRecord(m["name"], m["family"], m["network"], json.loads(m["reserved"]), m["subnet_prefixlen"],
                   m["parent"], m["declared_by"])


#: the lease table's columns in LeaseRecord's order: rows are made into records by position (a plan of a stack with
#: 10,000 leases reads them all; by name, through each row's mapping, that took three times as long)
_COLUMNS = [IP_LEASES.c[name] for name in LeaseRecord.__dataclass_fields__]


def _leases(conn: Connection, pool: str | None = None, stack: str | None = None) -> list[LeaseRecord]:
    query = select(*_COLUMNS)
    if pool is not None:
        query = query.where(IP_LEASES.c.pool == pool)
    if stack is not None:
        query = query.where(IP_LEASES.c.stack == stack)
    rows = conn.execute(query.order_by(IP_LEASES.c.pool, IP_LEASES.c.value)).all()
    return [LeaseRecord(*row) for row in rows]


def pools(conn: Connection) -> list[PoolRecord]:
    """Every pool the state database knows, by name."""
    return [_pool_row(row) for row in conn.execute(select(IP_POOLS).order_by(IP_POOLS.c.name))]


def leases(conn: Connection, *, pool: str | None = None, stack: str | None = None) -> list[LeaseRecord]:
    """The leases of one pool, of one stack, or all, by pool and value."""
    return _leases(conn, pool, stack)


def bind(conn: Connection, stack: str, addresses: Iterable[str]) -> int:
    """The leases of these resources (made by an apply) are theirs for good: ``planned`` → ``bound``."""
    wanted = list(addresses)
    if not wanted:
        return 0
    result = conn.execute(update(IP_LEASES).where(and_(IP_LEASES.c.stack == stack, IP_LEASES.c.address.in_(wanted),
                                                       IP_LEASES.c.state == "planned")).values(state="bound"))
    return int(result.rowcount or 0)


def release(conn: Connection, stack: str, addresses: Iterable[str]) -> int:
    """Every lease of these resources (whose delete was applied) goes back to its pool."""
    gone = list(addresses)
    if not gone:
        return 0
    result = conn.execute(delete(IP_LEASES).where(and_(IP_LEASES.c.stack == stack, IP_LEASES.c.address.in_(gone))))
    return int(result.rowcount or 0)


def give_back(conn: Connection, stack: str, released: Sequence[Lease]) -> list[Lease]:
    """Give back these leases of ``stack`` (the plan listed them: crane_iac/planner/leases.py), each only while it
    still is its holder's with that value (a lease moved or taken again since is left alone); those given back."""
    gone = []
    for x in released:
        result = conn.execute(delete(IP_LEASES).where(and_(
            IP_LEASES.c.pool == x.pool, IP_LEASES.c.value == x.value, IP_LEASES.c.stack == stack,
            IP_LEASES.c.address == x.holder.address, IP_LEASES.c.slot == x.holder.slot)))
        if result.rowcount:
            gone.append(x)
    return gone


def move(conn: Connection, stack: str, moves: Sequence[tuple[str, str]]) -> int:
    """A resource given a new address (``moved()``, ``crane state mv``) keeps its leases."""
    count = 0
    for old, new in moves:
        result = conn.execute(update(IP_LEASES).where(and_(IP_LEASES.c.stack == stack, IP_LEASES.c.address == old))
                              .values(address=new))
        count += int(result.rowcount or 0)
    return count


def release_value(conn: Connection, pool: str, value: str) -> LeaseRecord:
    """Give one lease back (``crane ipam release``): one whose resource no stack records any longer, such as a
    resource ``crane state rm`` let go of."""
    row = next((r for r in _leases(conn, pool) if r.value == value), None)
    if row is None:
        raise IpamError(f"pool {pool!r} has no lease of {value}; see `crane ipam show {pool}`")
    recorded = conn.execute(select(RESOURCES.c.address).where(
        and_(RESOURCES.c.stack == row.stack, RESOURCES.c.address == row.address))).first()
    if recorded is not None:
        raise IpamError(f"{value} is leased to {row.address} in stack {row.stack}, which state still records: "
                        "delete the resource (its lease goes with the delete), or `crane state rm` it first")
    conn.execute(delete(IP_LEASES).where(and_(IP_LEASES.c.pool == pool, IP_LEASES.c.value == value)))
    return row


def drop_pool(conn: Connection, name: str) -> list[PoolRecord]:
    """Drop a pool no one holds a value from (``crane ipam rm``), with its networks' own pools (those named after it
    and a subnet it handed out); the pools dropped. A pool with a lease (or a network pool of it with one), or the
    pool of a network whose subnet is still leased, is an IpamError naming them, and nothing is dropped."""
    row = _locked(conn, name)
    if row is None:
        known = ", ".join(p.name for p in pools(conn)) or "none"
        raise IpamError(f"no pool {name!r}; the pools are {known}")
    children = [p for p in pools(conn) if p.parent == name]
    held = [x for pool in (row, *children) for x in _leases(conn, pool.name)]
    if held:
        shown = "; ".join(f"{x.value} to {x.address} ({x.slot}) in stack {x.stack}, {x.state}" for x in held[:5])
        more = f"; and {len(held) - 5} more (`crane ipam show {name}`)" if len(held) > 5 else ""
        raise IpamError(
            f"pool {name!r} still has {len(held)} lease(s): {shown}{more}. A pool goes only once nothing holds a "
            "value from it: remove those resources from their stacks and apply (a lease goes with the applied "
            "delete, a planned one with the stack's next apply), or `crane state rm` a resource crane should let "
            "go of and `crane ipam release VALUE`; nothing was removed")
    if row.parent:
        subnet = next((x for x in _leases(conn, row.parent) if x.value == row.network), None)
        if subnet is not None:
            raise IpamError(f"pool {name!r} is the pool of {subnet.address} in stack {subnet.stack}, whose subnet "
                            f"{row.network} is still leased from pool {row.parent!r}: it goes with the network (then "
                            "`crane ipam rm` it, or its pool); nothing was removed")
    dropped = [*children, row]
    conn.execute(delete(IP_POOLS).where(IP_POOLS.c.name.in_([p.name for p in dropped])))
    return dropped


def import_records(conn: Connection, pools_: Sequence[PoolRecord], leases_: Sequence[LeaseRecord], url: str) -> None:
    """Write pools and leases as another store holds them (``crane state migrate``); a pool already here is a
    StateError, and nothing is written."""
    here = {row.name for row in pools(conn)} & {pool.name for pool in pools_}
    if here:
        raise StateError(f"{url} already holds pool(s) {', '.join(sorted(here))}; nothing was copied: migrate into "
                         "a store without them")
    if pools_:
        conn.execute(IP_POOLS.insert(), [
            {"name": p.name, "family": p.family, "network": p.network, "reserved": json.dumps(p.reserved),
             "subnet_prefixlen": p.subnet_prefixlen, "parent": p.parent, "declared_by": p.declared_by, "at": now()}
            for p in pools_])
    if leases_:
        conn.execute(IP_LEASES.insert(), [
            {"pool": x.pool, "value": x.value, "stack": x.stack, "address": x.address, "slot": x.slot,
             "state": x.state, "at": x.at} for x in leases_])
