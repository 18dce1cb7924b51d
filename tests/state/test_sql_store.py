"""The SQLite state store: rows per resource, serials, journal, locks, schema versions."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from crane_iac.errors import LockHeldError, StateError
from crane_iac.objects import Recorded
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed, Intent
from crane_iac.state.sql import SCHEMA_VERSION, SqlStateStore


def store(tmp_path: Path) -> SqlStateStore:
    return SqlStateStore(f"sqlite:///{tmp_path}/state.db")


def rec(address: str, memory: int = 256) -> Recorded:
    return Recorded(address, "vm", address.split(".")[1], {"memory_mib": memory}, {"uuid": "u"}, [], False)


def test_commit_read_history_and_serial(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.read("demo").serial == 0
    serial = s.commit("demo", [Committed("vm.a", "create", rec("vm.a")), Committed("vm.b", "create", rec("vm.b"))],
                      {"x": 1})
    assert serial == 1
    state = s.read("demo")
    assert sorted(state.resources) == ["vm.a", "vm.b"] and state.outputs == {"x": 1} and state.lineage
    assert s.commit("demo", [Committed("vm.a", "delete", None, {"memory_mib": 256})]) == 2
    assert sorted(s.read("demo").resources) == ["vm.b"]
    assert [(h.serial, h.action, h.address) for h in s.history("demo")] == [
        (1, "create", "vm.a"), (1, "create", "vm.b"), (2, "delete", "vm.a")]
    assert s.read("other").resources == {}
    assert stat.S_IMODE(os.stat(tmp_path / "state.db").st_mode) == 0o600


def test_rows_written_do_not_grow_with_the_stack(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.commit("big", [Committed(f"vm.v{i}", "create", rec(f"vm.v{i}")) for i in range(2000)])
    before = s.rows_written
    s.record_intents("big", [Intent("vm.v7", "vm", "v7", "update", {})])
    s.commit("big", [Committed("vm.v7", "update", rec("vm.v7", 512), {"memory_mib": 256})])
    assert s.rows_written - before < 10
    assert s.read("big").resources["vm.v7"].properties == {"memory_mib": 512}
    assert s.read("big").intents == {}


def test_intents_survive_until_the_final_half_of_a_replacement(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.record_intents("d", [Intent("vm.a", "vm", "a", "delete-then-create", {"memory_mib": 1})])
    s.commit("d", [Committed("vm.a", "delete", None, final=False)])
    assert list(s.read("d").intents) == ["vm.a"]
    s.commit("d", [Committed("vm.a", "replace", rec("vm.a"))])
    assert s.read("d").intents == {}


def test_lock_held_by_a_live_process_fails_fast_and_dead_holder_is_cleared(tmp_path: Path) -> None:
    s = store(tmp_path)
    held = s.acquire_lock("demo", "apply")
    other = store(tmp_path)
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        other.acquire_lock("demo", "apply", timeout=0.3)
    s.release_lock("demo", held)
    other.release_lock("demo", other.acquire_lock("demo", "apply"))
    # a holder killed with SIGKILL leaves its row; on the same host a dead pid does not block
    code = ("import sys, os, signal; sys.path.insert(0, sys.argv[1]);"
            "from crane_iac.state.sql import SqlStateStore;"
            "SqlStateStore(sys.argv[2]).acquire_lock('demo', 'apply'); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parents[2]), f"sqlite:///{tmp_path}/state.db"])
    assert s.lock_info("demo") is not None
    s.acquire_lock("demo", "apply")
    assert s.lock_info("demo").holder.endswith(f"pid {os.getpid()}")  # type: ignore[union-attr]


def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.schema_version() == SCHEMA_VERSION
    s.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE crane_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StateError, match="newer than this crane"):
        store(tmp_path)


def test_migration_runs_from_an_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE crane_meta SET value = '0' WHERE key = 'schema_version'")
    ran: list[int] = []
    monkeypatch.setitem(__import__("crane_iac.state.sql", fromlist=["MIGRATIONS"]).MIGRATIONS, 1,
                        lambda conn: ran.append(1))
    assert store(tmp_path).schema_version() == SCHEMA_VERSION and ran == [1]


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(StateError, match="'redis' is not supported"):
        open_store("redis://localhost/0")


def test_a_version_1_database_gains_lock_ids_and_the_forgotten_table(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:  # the schema crane 0.1's first release wrote
        db.executescript("""
            CREATE TABLE crane_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
            INSERT INTO crane_meta VALUES ('schema_version', '1');
            CREATE TABLE locks (stack VARCHAR PRIMARY KEY, holder VARCHAR NOT NULL, host VARCHAR NOT NULL,
                                pid INTEGER NOT NULL, operation VARCHAR NOT NULL, acquired_at VARCHAR NOT NULL);
        """)
    s = store(tmp_path)
    assert s.schema_version() == SCHEMA_VERSION == 3
    lock_id = s.acquire_lock("demo", "apply")
    assert s.lock_info("demo").id == lock_id  # type: ignore[union-attr]
    assert s.read("demo").forgotten == []


def test_forget_keeps_a_tombstone_and_move_follows_dependencies(tmp_path: Path) -> None:
    s = store(tmp_path)
    web = Recorded("vm.web", "vm", "web", {"memory_mib": 1}, {}, ["network.lan"])
    lan = Recorded("network.lan", "network", "lan", {"mode": "nat"})
    s.commit("d", [Committed("vm.web", "create", web), Committed("network.lan", "create", lan)])
    assert s.move("d", [("network.lan", "network.front")]) == 2
    state = s.read("d")
    assert sorted(state.resources) == ["network.front", "vm.web"]
    assert state.resources["network.front"].physical == "lan"  # the object keeps its name
    assert state.resources["vm.web"].dependencies == ["network.front"]
    with pytest.raises(StateError, match="already in the state"):
        s.move("d", [("vm.web", "network.front")])
    with pytest.raises(StateError, match=r"no resource 'vm\.nope'"):
        s.forget("d", ["vm.nope"])
    assert s.forget("d", ["vm.web"]) == 3
    state = s.read("d")
    assert list(state.resources) == ["network.front"]
    assert [(f.address, f.kind, f.physical) for f in state.forgotten] == [("vm.web", "vm", "web")]
    s.unforget("d", "vm", "web")
    assert s.read("d").forgotten == []
    assert [(h.serial, h.action, h.address) for h in s.history("d")][-2:] == [(2, "move", "network.front"),
                                                                               (3, "forget", "vm.web")]
