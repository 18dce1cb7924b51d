"""Rows read back into crane's values: what reading a stack and exporting it share."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from crane_iac.state.base import HistoryEntry, RunInfo, Setting
from crane_iac.state.sql.schema import HISTORY, RUNS, SETTINGS


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def from_json(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def decode_all(texts: Iterable[str]) -> list[Any]:
    """Every JSON text decoded, in order, in one ``json.loads`` of them as an array: the decoder keeps one string
    per distinct key for the whole call, so 10,000 records share one "memory_mib" (they would hold 10,000 copies,
    a third of what state takes in memory), and one call costs a fraction of 30,000."""
    return json.loads(f"[{','.join(texts)}]")  # type: ignore[no-any-return]


#: history lines with the run each names (None where it names none)
JOURNAL = select(HISTORY, RUNS.c.who.label("run_by"), RUNS.c.operation.label("run_operation"),
                 RUNS.c.started_at.label("run_started_at")).select_from(
    HISTORY.outerjoin(RUNS, (RUNS.c.stack == HISTORY.c.stack) & (RUNS.c.id == HISTORY.c.run)))


def history_entry(r: Any) -> HistoryEntry:
    run = RunInfo(r.run, r.run_by, r.run_operation, r.run_started_at) if r.run and r.run_by is not None else None
    return HistoryEntry(r.serial, r.at, r.action, r.address, from_json(r.before), from_json(r.after), r.who, r.why,
                        run)


def read_settings(conn: Connection, stack: str) -> dict[str, Setting]:
    rows = conn.execute(select(SETTINGS).where(SETTINGS.c.stack == stack)).all()
    return {r.key: Setting(json.loads(r.value), r.who, r.why, r.at, r.serial) for r in rows}
