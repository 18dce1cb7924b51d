"""A stack's whole state as a value (``StackDump``) and back: what `crane state migrate` copies between stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from sys import intern
from typing import Any

from sqlalchemy import Connection, Table, insert, select, union

from crane_iac.objects import Action, Recorded
from crane_iac.state.base import Forgotten, Intent, StackDump
from crane_iac.state.sql.rows import JOURNAL, decode_all, history_entry, read_settings, to_json
from crane_iac.state.sql.schema import (
    FORGOTTEN,
    HISTORY,
    INTENTS,
    JOBS,
    MEMORY,
    RESOURCES,
    RUNS,
    SETTINGS,
    STACKS,
    STATE_TABLES,
    now,
)


def export_stack(conn: Connection, stack: str) -> StackDump:
    """Every row of ``stack`` (read in one transaction, so at one serial)."""
    head = conn.execute(select(STACKS).where(STACKS.c.name == stack)).first()
    rows = conn.execute(select(RESOURCES).where(RESOURCES.c.stack == stack).order_by(RESOURCES.c.address)).all()
    values = iter(decode_all(text for r in rows for text in (r.properties, r.outputs, r.dependencies)))
    resources = [Recorded(r.address, intern(r.kind), r.physical, next(values), next(values), next(values),
                          bool(r.protect), intern(r.endpoint), intern(r.endpoint_config)) for r in rows]
    intents = [Intent(r.address, r.kind, r.physical, Action(r.action), json.loads(r.properties),
                      endpoint=r.endpoint, at=r.at)
               for r in conn.execute(select(INTENTS).where(INTENTS.c.stack == stack)
                                     .order_by(INTENTS.c.address))]
    forgotten = [Forgotten(Recorded(r.address, r.kind, r.physical, json.loads(r.properties),
                                    endpoint=r.endpoint), r.at)
                 for r in conn.execute(select(FORGOTTEN).where(FORGOTTEN.c.stack == stack)
                                       .order_by(FORGOTTEN.c.kind, FORGOTTEN.c.physical, FORGOTTEN.c.endpoint))]
    history = [history_entry(r) for r in conn.execute(
        JOURNAL.where(HISTORY.c.stack == stack).order_by(HISTORY.c.id))]
    settings = read_settings(conn, stack)
    memory = {r.key: json.loads(r.value) for r in conn.execute(select(MEMORY).where(MEMORY.c.stack == stack)
                                                                .order_by(MEMORY.c.key))}
    jobs = {r.name: json.loads(r.record) for r in conn.execute(select(JOBS).where(JOBS.c.stack == stack)
                                                                .order_by(JOBS.c.name))}
    serial, lineage, outputs = (head.serial, head.lineage, json.loads(head.outputs)) if head else (0, "", {})
    return StackDump(stack, serial, lineage, outputs, resources, intents, forgotten, history, settings, memory,
                     jobs)


def stacks_present(conn: Connection, names: Sequence[str]) -> list[str]:
    """Those of ``names`` that have a row in any state table, sorted."""
    present = union(*(select(column.label("name")).where(column.in_(names)) for column in STATE_TABLES.values()))
    return sorted(r[0] for r in conn.execute(present))


def import_stack(conn: Connection, d: StackDump) -> int:
    """Insert the rows of ``d`` (a stack the store does not hold); returns how many were written."""
    dumps, stack = json.dumps, d.name
    written = 0
    if d.lineage or d.serial:
        conn.execute(insert(STACKS).values(name=stack, serial=d.serial, lineage=d.lineage or str(uuid.uuid4()),
                                           outputs=dumps(d.outputs)))
    batches: list[tuple[Table, list[dict[str, Any]]]] = [
        (RESOURCES, [{"stack": stack, "address": r.address, "kind": r.kind, "physical": r.physical,
                      "properties": dumps(r.properties), "outputs": dumps(r.outputs),
                      "dependencies": dumps(r.dependencies), "protect": r.protect, "endpoint": r.endpoint,
                      "endpoint_config": r.endpoint_config}
                     for r in d.resources]),
        (INTENTS, [{"stack": stack, "address": i.address, "kind": i.kind, "physical": i.physical,
                    "action": str(i.action), "properties": dumps(i.properties), "at": i.at or now(),
                    "endpoint": i.endpoint}
                   for i in d.intents]),
        (FORGOTTEN, [{"stack": stack, "kind": f.record.kind, "physical": f.record.physical,
                      "address": f.record.address, "properties": dumps(f.record.properties), "at": f.at,
                      "endpoint": f.record.endpoint} for f in d.forgotten]),
        (RUNS, [{"stack": stack, "id": r.id, "who": r.by, "operation": r.operation, "started_at": r.started_at}
                for r in {h.run.id: h.run for h in d.history if h.run is not None}.values()]),
        (HISTORY, [{"stack": stack, "serial": h.serial, "at": h.at, "action": h.action, "address": h.address,
                    "before": to_json(h.before), "after": to_json(h.after), "who": h.by, "why": h.why,
                    "run": h.run.id if h.run is not None else ""}
                   for h in d.history]),
        (SETTINGS, [{"stack": stack, "key": k, "value": dumps(s.value), "who": s.by, "why": s.why, "at": s.at,
                     "serial": s.serial} for k, s in d.settings.items()]),
        # the token is the old store's lease's, which stays behind: none here
        (MEMORY, [{"stack": stack, "key": k, "value": dumps(v), "token": 0, "at": now()}
                  for k, v in d.memory.items()]),
        (JOBS, [{"stack": stack, "name": name, "record": dumps(record), "at": now()}
                for name, record in d.jobs.items()]),
    ]
    for table, rows in batches:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(table), rows[start:start + 5000])
            written += len(rows[start:start + 5000])
    return written
