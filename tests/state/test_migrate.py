"""`migrate`: every stack copied between backends without loss, both ways; refused when it would overwrite or race."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.errors import StateError
from crane_iac.ipam.pools import Holder, PoolSpec, Want
from crane_iac.objects import Action, Outcome
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed, Intent, StateStore
from crane_iac.state.migrate import migrate
from tests.state.test_conformance import create, populate, rec


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


@pytest.fixture
def postgresql_store(postgresql_database: str) -> Iterator[StateStore]:
    s = open_store(postgresql_database)
    yield s
    s.close()


def test_sqlite_to_postgresql_and_back_is_a_round_trip(tmp_path: Path, sqlite_store: StateStore,
                                                       postgresql_store: StateStore) -> None:
    populate(sqlite_store, "web")
    sqlite_store.commit("db", create(*(f"vm.db{i}" for i in range(1200))), {"primary": "db0"})
    sqlite_store.record_intents("crashed", [Intent("vm.x", "vm", "x", Action.CREATE, {"pool": "p"})])
    office = PoolSpec.parse("office", "10.70.0.0/24", reserved=["10.70.0.1"])
    sqlite_store.lease("web", [office], [("office", Want(Holder("web", f"vm.w{i}", "nic0"))) for i in range(3)])
    job = {"name": "pi", "id": "0a1b2c3d", "status": "done", "exit_code": 0, "steps": {"run": {"status": "done"}}}
    sqlite_store.record_job("web", "pi", job, line={"id": "0a1b2c3d", "step": "end", "status": "done"}, by="me")
    original = {name: sqlite_store.export_stack(name) for name in sqlite_store.stacks()}

    report = migrate(sqlite_store, postgresql_store)
    assert [(s.name, s.serial, s.resources) for s in report.stacks] == [("crashed", 0, 0), ("db", 1, 1200),
                                                                        ("web", 5, 2)]
    assert "Copied 3 stack(s)" in report.lines()[0] and "  and 1 address pool(s) with 3 lease(s)" in report.lines()
    assert postgresql_store.jobs("web") == {"pi": job} and postgresql_store.jobs("db") == {}  # the job pipeline's too
    assert any(line.startswith("  web:") and line.endswith(", 1 jobs") for line in report.lines()), report.lines()
    assert (postgresql_store.ip_pools(), postgresql_store.ip_leases()) == (sqlite_store.ip_pools(),
                                                                          sqlite_store.ip_leases())
    # the copy hands out the next free address, never one the source had leased
    got = postgresql_store.lease("web", [office], [("office", Want(Holder("web", "vm.w9", "nic0")))])
    assert got["office", Holder("web", "vm.w9", "nic0")] == "10.70.0.5"
    assert {name: postgresql_store.export_stack(name) for name in postgresql_store.stacks()} == original
    for name in original:
        assert postgresql_store.read(name) == sqlite_store.read(name)
        assert postgresql_store.lock_info(name) is None and sqlite_store.lock_info(name) is None

    # the copy is a working store: it goes on from the same serial and lineage
    assert postgresql_store.commit("web", [Committed("vm.new", Outcome.CREATE, rec("vm.new"))], expected_serial=5) == 6

    back = open_store(f"sqlite:///{tmp_path}/back.db")
    try:
        migrate(postgresql_store, back)
        assert back.export_stack("db") == original["db"] and back.export_stack("crashed") == original["crashed"]
        assert back.export_stack("web") == postgresql_store.export_stack("web")
        assert back.read("web").lineage == original["web"].lineage
    finally:
        back.close()


def test_a_target_holding_any_of_the_stacks_is_refused_and_nothing_is_written(sqlite_store: StateStore,
                                                                               postgresql_store: StateStore) -> None:
    populate(sqlite_store, "web")
    sqlite_store.commit("db", create("vm.a"))
    postgresql_store.set_setting("db", "k", 1, by="x", why="y")
    with pytest.raises(StateError, match=r"already holds stack\(s\) 'db'; nothing was copied"):
        migrate(sqlite_store, postgresql_store)
    assert postgresql_store.stacks() == ["db"] and postgresql_store.read("db").serial == 1
    assert sqlite_store.lock_info("web") is None


def test_a_locked_source_stack_is_refused(sqlite_store: StateStore, postgresql_store: StateStore) -> None:
    sqlite_store.commit("a", create("vm.a"))
    sqlite_store.commit("b", create("vm.b"))
    held = sqlite_store.acquire_lock("b", "apply")
    with pytest.raises(StateError, match=r"cannot migrate while a run holds a stack: stack 'b' is locked by .*"
                                         "nothing was copied"):
        migrate(sqlite_store, postgresql_store)
    assert postgresql_store.stacks() == []
    assert sqlite_store.lock_info("a") is None  # the locks the migration took are released
    assert sqlite_store.lock_info("b").id == held  # type: ignore[union-attr]


def test_an_empty_source_copies_nothing(sqlite_store: StateStore, postgresql_store: StateStore) -> None:
    report = migrate(postgresql_store, sqlite_store)
    assert report.stacks == [] and "nothing was copied" in report.lines()[0]
