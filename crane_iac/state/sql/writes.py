"""The writes to a stack's state, each inside a transaction the store opens: recording intents, committing applied
steps, forgetting and moving resources, setting a setting.

Every write that changes what a plan reads advances the stack's serial first (``bump``), which locks the stack's
head row until the transaction ends: concurrent writers take turns, and one that lost the race to a serial it
expected writes nothing. Each write returns the rows it wrote (with the serial it made, ``Written``), which the
store adds up for benchmarks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, insert, or_, select

from crane_iac.errors import StaleStateError, StateError
from crane_iac.ipam.pools import Lease
from crane_iac.state.base import Committed, Fence, Intent, RunInfo
from crane_iac.state.sql import leaders, leases
from crane_iac.state.sql.dialects import dialect_insert
from crane_iac.state.sql.schema import FORGOTTEN, HISTORY, INTENTS, JOBS, RESOURCES, RUNS, SETTINGS, STACKS, now

#: addresses per ``IN (…)`` list, well below every driver's limit on bound parameters
CHUNK = 500


class Written(NamedTuple):
    """The serial a write made and the rows it inserted, updated or deleted."""

    serial: int
    rows: int


def record_intents(conn: Connection, dialect: str, stack: str, intents: list[Intent]) -> int:
    """Note what apply is about to do (one row per address, the latest intent winning), so that an interrupted
    run's half-done steps are found by the next one."""
    at = now()
    rows = [{"stack": stack, "address": i.address, "kind": i.kind, "physical": i.physical,
             "action": str(i.action), "properties": json.dumps(i.properties), "at": at, "endpoint": i.endpoint}
            for i in intents]
    statement = dialect_insert(dialect, INTENTS)
    statement = statement.on_conflict_do_update(
        index_elements=[INTENTS.c.stack, INTENTS.c.address],
        set_={c: statement.excluded[c] for c in ("kind", "physical", "action", "properties", "at", "endpoint")})
    conn.execute(statement, rows)
    return len(intents)


def bump(conn: Connection, dialect: str, stack: str, outputs: dict[str, Any] | None = None,
         expected_serial: int | None = None) -> tuple[int, dict[str, Any]]:
    """Advance the stack's serial (creating its head row) and set its outputs; returns the new serial and the
    outputs it had before. The head row stays locked until the transaction ends, so concurrent writers take
    turns; with ``expected_serial``, a writer that lost the race raises StaleStateError."""
    locked = select(STACKS.c.serial, STACKS.c.outputs).where(STACKS.c.name == stack).with_for_update()
    head = conn.execute(locked).first()
    if head is None:  # the first write: writers racing to create the head row all end up locking it
        conn.execute(dialect_insert(dialect, STACKS).values(name=stack, serial=0, lineage=str(uuid.uuid4()),
                                                            outputs="{}")
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


def note_run(conn: Connection, dialect: str, stack: str, run: RunInfo | None) -> str:
    """Record the run making a write (once per run) and return the ID its journal lines carry ("" for none)."""
    if run is None:
        return ""
    conn.execute(dialect_insert(dialect, RUNS).values(stack=stack, id=run.id, who=run.by, operation=run.operation,
                                                      started_at=run.started_at)
                 .on_conflict_do_nothing(index_elements=[RUNS.c.stack, RUNS.c.id]))
    return run.id


def commit(conn: Connection, dialect: str, stack: str, committed: list[Committed],
           outputs: dict[str, Any] | None, *, expected_serial: int | None, run: RunInfo | None,
           released: Sequence[Lease] = ()) -> Written:
    """Record applied steps (a record replaces the address's row; None deletes it), finish their intents and
    journal each; a commit with no steps still journals the outputs it set, so every serial leaves a line.
    ``released`` leases go back to their pools, each journalled (``release``, its pool, value and field)."""
    at = now()
    dumps = json.dumps
    serial, old_outputs = bump(conn, dialect, stack, outputs, expected_serial)
    run_id = note_run(conn, dialect, stack, run)
    addresses = [c.address for c in committed]
    for start in range(0, len(addresses), CHUNK):
        conn.execute(delete(RESOURCES).where(RESOURCES.c.stack == stack,
                                             RESOURCES.c.address.in_(addresses[start:start + CHUNK])))
    finished = [c.address for c in committed if c.final]
    for start in range(0, len(finished), CHUNK):
        conn.execute(delete(INTENTS).where(INTENTS.c.stack == stack,
                                           INTENTS.c.address.in_(finished[start:start + CHUNK])))
    rows = [  # a step of a batch is recorded over the one before it for the same address
        {"stack": stack, "address": c.address, "kind": c.record.kind, "physical": c.record.physical,
         "properties": dumps(c.record.properties), "outputs": dumps(c.record.outputs),
         "dependencies": dumps(c.record.dependencies), "protect": c.record.protect,
         "endpoint": c.record.endpoint, "endpoint_config": c.record.endpoint_config}
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
    gone = leases.give_back(conn, stack, released)
    journal += [{"stack": stack, "serial": serial, "at": at, "action": "release", "address": x.holder.address,
                 "before": dumps({"pool": x.pool, "value": x.value, "field": x.holder.slot}), "after": None,
                 "who": "", "why": "", "run": run_id} for x in gone]
    conn.execute(insert(HISTORY), journal)
    # a made resource's leases are its own from now on; a deleted one's go back to their pools with the delete
    leases.bind(conn, stack, [c.address for c in committed if c.record is not None])
    leases.release(conn, stack, [c.address for c in committed if c.record is None and c.final])
    return Written(serial, 1 + len(rows) + len(journal) + len(addresses))


def forget(conn: Connection, dialect: str, stack: str, addresses: list[str], *, expected_serial: int | None,
           run: RunInfo | None) -> Written:
    """Drop resources from the state without touching them (`crane state rm`), keeping each as forgotten so that
    the next plan does not take it for a stray object crane should adopt."""
    at = now()
    serial, _ = bump(conn, dialect, stack, expected_serial=expected_serial)
    run_id = note_run(conn, dialect, stack, run)
    rows = conn.execute(select(RESOURCES).where(RESOURCES.c.stack == stack,
                                                RESOURCES.c.address.in_(addresses))).all()
    missing = sorted(set(addresses) - {r.address for r in rows})
    if missing:
        raise StateError(f"no resource {missing[0]!r} in the state of stack {stack!r}; see `crane state list`")
    conn.execute(delete(RESOURCES).where(RESOURCES.c.stack == stack, RESOURCES.c.address.in_(addresses)))
    conn.execute(delete(INTENTS).where(INTENTS.c.stack == stack, INTENTS.c.address.in_(addresses)))
    for r in rows:
        conn.execute(delete(FORGOTTEN).where(FORGOTTEN.c.stack == stack, FORGOTTEN.c.kind == r.kind,
                                             FORGOTTEN.c.physical == r.physical,
                                             FORGOTTEN.c.endpoint == r.endpoint))
    conn.execute(insert(FORGOTTEN), [
        {"stack": stack, "kind": r.kind, "physical": r.physical, "address": r.address,
         "properties": r.properties, "at": at, "endpoint": r.endpoint} for r in rows])
    conn.execute(insert(HISTORY), [
        {"stack": stack, "serial": serial, "at": at, "action": "forget", "address": r.address,
         "before": r.properties, "after": None, "who": "", "why": "", "run": run_id} for r in rows])
    return Written(serial, 1 + 3 * len(rows))


def unforget(conn: Connection, stack: str, kind: str, physical: str, endpoint: str) -> None:
    """Let crane manage a forgotten object again (`crane import`)."""
    conn.execute(delete(FORGOTTEN).where(FORGOTTEN.c.stack == stack, FORGOTTEN.c.kind == kind,
                                         FORGOTTEN.c.physical == physical, FORGOTTEN.c.endpoint == endpoint))


def move(conn: Connection, dialect: str, stack: str, moves: list[tuple[str, str]], *,
         expected_serial: int | None, run: RunInfo | None) -> Written:
    """Rename resources' addresses (`crane state mv`), in order, with their intents and the dependencies other
    resources record on them."""
    at = now()
    serial, _ = bump(conn, dialect, stack, expected_serial=expected_serial)
    run_id = note_run(conn, dialect, stack, run)
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
    leases.move(conn, stack, moves)  # a resource keeps its addresses under its new address
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
    return Written(serial, 1 + 3 * len(moves))


def set_setting(conn: Connection, dialect: str, stack: str, key: str, value: Any, *, by: str, why: str,
                expected_serial: int | None, run: RunInfo | None, fence: Fence | None = None,
                memory: Mapping[str, Any] | None = None) -> Written:
    """Set (or, with None, clear) a stack setting, journalled with who set it and why; with ``fence``, only while
    its lease holds (checked first: a deposed leader writes nothing), and ``memory`` kept with it."""
    try:
        encoded = None if value is None else json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"setting {key!r} of stack {stack!r}: {exc}; a setting is a JSON value") from None
    if fence is not None:
        leaders.check(conn, stack, fence)
    if memory:
        leaders.remember(conn, stack, memory, fence.token if fence is not None else 0)
    at = now()
    serial, _ = bump(conn, dialect, stack, expected_serial=expected_serial)
    run_id = note_run(conn, dialect, stack, run)
    old = conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.stack == stack, SETTINGS.c.key == key)).first()
    conn.execute(delete(SETTINGS).where(SETTINGS.c.stack == stack, SETTINGS.c.key == key))
    if encoded is not None:
        conn.execute(insert(SETTINGS).values(stack=stack, key=key, value=encoded, who=by, why=why, at=at,
                                             serial=serial))
    conn.execute(insert(HISTORY).values(
        stack=stack, serial=serial, at=at, action="setting", address=f"setting:{key}",
        before=None if old is None else json.dumps({"value": json.loads(old[0])}),
        after=None if encoded is None else json.dumps({"value": value}), who=by, why=why, run=run_id))
    return Written(serial, 3)


def record_job(conn: Connection, stack: str, name: str, record: Mapping[str, Any], line: Mapping[str, Any],
               by: str) -> Written:
    """Replace job ``name``'s record and journal ``line`` at the stack's current serial (0 for a stack with no
    state yet): a job's step changes no resource, so it takes no turn on the serial."""
    at = now()
    head = conn.execute(select(STACKS.c.serial).where(STACKS.c.name == stack)).first()
    conn.execute(delete(JOBS).where(JOBS.c.stack == stack, JOBS.c.name == name))
    conn.execute(insert(JOBS).values(stack=stack, name=name, record=json.dumps(record), at=at))
    conn.execute(insert(HISTORY).values(stack=stack, serial=head[0] if head else 0, at=at, action="job",
                                        address=f"job:{name}", before=None, after=json.dumps(dict(line)), who=by,
                                        why="crane job", run=""))
    return Written(head[0] if head else 0, 2)
