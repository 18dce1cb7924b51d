"""The state store conformance suite: every backend `open_store` serves runs all of it (``state_url``/``store``
are parametrized over the backends in conftest.BACKENDS). A new backend is added there and must pass unchanged."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy

from crane_iac.errors import LockHeldError, StaleStateError, StateError
from crane_iac.objects import Action, Outcome, Recorded
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed, Intent, RunInfo, StateStore
from crane_iac.state.sql import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]


def rec(address: str, memory: int = 256, deps: list[str] | None = None) -> Recorded:
    return Recorded(address, "vm", address.split(".")[1], {"memory_mib": memory}, {"uuid": "u"}, deps or [], False)


def create(*addresses: str) -> list[Committed]:
    return [Committed(a, Outcome.CREATE, rec(a)) for a in addresses]


# rows, serials, history


def test_commit_read_history_and_serial(store: StateStore) -> None:
    assert store.read("demo").serial == 0 and store.read("demo").lineage == ""
    assert store.commit("demo", create("vm.a", "vm.b"), {"x": 1}) == 1
    state = store.read("demo")
    assert sorted(state.resources) == ["vm.a", "vm.b"] and state.outputs == {"x": 1} and state.lineage
    assert state.resources["vm.a"] == rec("vm.a")
    lineage = state.lineage
    assert store.commit("demo", [Committed("vm.a", Outcome.DELETE, None, {"memory_mib": 256})]) == 2
    state = store.read("demo")
    assert sorted(state.resources) == ["vm.b"] and state.lineage == lineage and state.outputs == {"x": 1}
    assert store.commit("demo", [], {"x": 2}) == 3
    assert [(h.serial, h.action, h.address, h.before, h.after) for h in store.history("demo")] == [
        (1, "create", "vm.a", None, {"memory_mib": 256}), (1, "create", "vm.b", None, {"memory_mib": 256}),
        (2, "delete", "vm.a", {"memory_mib": 256}, None), (3, "outputs", "(stack outputs)", {"x": 1}, {"x": 2})]
    assert [h.serial for h in store.history("demo", limit=2)] == [2, 3]
    assert store.read("other").resources == {} and store.read("other").serial == 0
    assert store.stacks() == ["demo"]


def test_a_record_keeps_every_field(store: StateStore) -> None:
    odd = Recorded("vm.x", "vm", "x-1", {"nested": {"list": [1, "two", None]}, "ünïcode": "☃"}, {"ip": "10.0.0.2"},
                   ["network.lan"], True, "host-b")
    store.commit("demo", [Committed("vm.x", Outcome.IMPORT, odd)])
    assert store.read("demo").resources["vm.x"] == odd


def test_rows_written_do_not_grow_with_the_stack(store: StateStore) -> None:
    store.commit("big", create(*(f"vm.v{i}" for i in range(2000))))
    before = store.rows_written
    store.record_intents("big", [Intent("vm.v7", "vm", "v7", Action.UPDATE, {})])
    store.commit("big", [Committed("vm.v7", Outcome.UPDATE, rec("vm.v7", 512), {"memory_mib": 256})])
    assert store.rows_written - before < 10
    state = store.read("big")
    assert len(state.resources) == 2000 and state.resources["vm.v7"].properties == {"memory_mib": 512}
    assert state.intents == {}


# intents


def test_intents_survive_until_the_final_half_of_a_replacement(store: StateStore) -> None:
    store.record_intents("d", [Intent("vm.a", "vm", "a", Action.DELETE_THEN_CREATE, {"pool": "p"})])
    intent = store.read("d").intents["vm.a"]
    assert (intent.kind, intent.physical, intent.action, intent.properties) == ("vm", "a", "delete-then-create",
                                                                                {"pool": "p"}) and intent.at
    store.commit("d", [Committed("vm.a", Outcome.DELETE, None, final=False)])
    assert list(store.read("d").intents) == ["vm.a"]
    store.commit("d", [Committed("vm.a", Outcome.REPLACE, rec("vm.a"))])
    assert store.read("d").intents == {}


def test_recording_an_intent_again_replaces_it(store: StateStore) -> None:
    store.record_intents("d", [Intent("vm.a", "vm", "a", Action.CREATE), Intent("vm.b", "vm", "b", Action.CREATE)])
    store.record_intents("d", [Intent("vm.a", "vm", "a2", Action.UPDATE)])
    intents = store.read("d").intents
    assert sorted(intents) == ["vm.a", "vm.b"] and (intents["vm.a"].physical, intents["vm.a"].action) == (
        "a2", "update")
    assert store.stacks() == ["d"]  # a stack with only intents (a run killed before its first commit) is a stack


# locks


def test_a_held_lock_fails_fast_and_names_its_holder(state_url: str, store: StateStore) -> None:
    held = store.acquire_lock("demo", "apply")
    info = store.lock_info("demo")
    assert info is not None and info.id == held and info.operation == "apply" and info.pid == os.getpid()
    other = open_store(state_url)
    try:
        with pytest.raises(LockHeldError, match=f"pid {os.getpid()}") as raised:
            other.acquire_lock("demo", "apply", timeout=0.3)
        assert f"lock ID {held}" in str(raised.value) and f"crane force-unlock {held}" in str(raised.value)
        with pytest.raises(LockHeldError):  # the same store cannot take its own lock twice either
            store.acquire_lock("demo", "apply")
        assert other.lock_info("other") is None
        other.release_lock("other", other.acquire_lock("other", "apply"))  # locks are per stack
        store.release_lock("demo", held)
        assert store.lock_info("demo") is None
        other.release_lock("demo", other.acquire_lock("demo", "apply"))
    finally:
        other.close()


def test_a_waiting_run_gets_the_lock_when_it_is_released(state_url: str, store: StateStore) -> None:
    held = store.acquire_lock("demo", "apply")
    releaser = threading.Timer(0.5, store.release_lock, ("demo", held))
    releaser.start()
    other = open_store(state_url)
    try:
        got = other.acquire_lock("demo", "refresh", timeout=20)
        assert other.lock_info("demo").operation == "refresh"  # type: ignore[union-attr]
        other.release_lock("demo", got)
    finally:
        releaser.join()
        other.close()


def test_release_leaves_a_lock_taken_since_alone_and_break_journals_who_and_why(state_url: str,
                                                                                 store: StateStore) -> None:
    store.commit("demo", create("vm.a"))
    old = store.acquire_lock("demo", "apply")
    other = open_store(state_url)
    try:
        with pytest.raises(StateError, match=f"locked with ID {old}, not nope"):
            other.break_lock("demo", "nope", "ops@host")
        info = other.break_lock("demo", old, "ops@host", why="the runner's VM was lost")
        assert info.id == old and info.pid == os.getpid()
        assert store.lock_info("demo") is None
        with pytest.raises(StateError, match="is not locked"):
            other.break_lock("demo", old, "ops@host")
        newer = other.acquire_lock("demo", "apply")
        store.release_lock("demo", old)  # the old holder's late release leaves the lock taken since alone
        assert store.lock_info("demo").id == newer  # type: ignore[union-attr]
        other.release_lock("demo", newer)
        assert store.lock_info("demo") is None
        again = store.acquire_lock("demo", "apply")  # the run whose lock was broken can lock the stack again
        assert other.lock_info("demo").id == again  # type: ignore[union-attr]
        store.release_lock("demo", again)
        entry = store.history("demo")[-1]
        assert (entry.serial, entry.action, entry.address, entry.by, entry.why) == (
            1, "force-unlock", f"lock {old}", "ops@host", "the runner's VM was lost")
        assert entry.before is not None and entry.before["holder"] == info.holder
    finally:
        other.close()


def test_a_killed_holder_does_not_block(state_url: str, store: StateStore) -> None:
    code = ("import sys, os, signal; sys.path.insert(0, sys.argv[1]);"
            "from crane_iac.state.backends import open_store;"
            "open_store(sys.argv[2]).acquire_lock('demo', 'apply'); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, str(REPO), state_url])
    assert killed.returncode == -9
    got = store.acquire_lock("demo", "apply", timeout=10)
    assert store.lock_info("demo").id == got  # type: ignore[union-attr]
    store.release_lock("demo", got)


# optimistic concurrency


def test_a_write_at_a_stale_serial_is_refused_and_writes_nothing(store: StateStore) -> None:
    store.commit("demo", create("vm.a", "vm.b"), {"x": 1})
    assert store.commit("demo", create("vm.c"), expected_serial=1) == 2
    before = (store.read("demo"), store.history("demo"))
    attempts = [
        lambda: store.commit("demo", create("vm.d"), {"x": 9}, expected_serial=1),
        lambda: store.forget("demo", ["vm.a"], expected_serial=1),
        lambda: store.move("demo", [("vm.a", "vm.z")], expected_serial=0),
        lambda: store.set_setting("demo", "size", 3, by="autoscaler", why="load", expected_serial=7),
    ]
    for attempt in attempts:
        with pytest.raises(StaleStateError) as raised:
            attempt()
        message = str(raised.value)
        assert "stack 'demo' is at serial 2, not " in message and "nothing was written" in message, message
        assert (store.read("demo"), store.history("demo")) == before
    with pytest.raises(StaleStateError, match="stack 'fresh' is at serial 0, not 1"):
        store.commit("fresh", create("vm.a"), expected_serial=1)
    assert store.stacks() == ["demo"]
    assert store.commit("fresh", create("vm.a"), expected_serial=0) == 1
    assert store.set_setting("demo", "size", 3, by="a", why="b", expected_serial=2) == 3
    assert store.move("demo", [("vm.a", "vm.z")], expected_serial=3) == 4
    assert store.forget("demo", ["vm.z"], expected_serial=4) == 5



def run_writers(write: Callable[[int], None], stores: list[StateStore]) -> None:
    """``write(i)`` in a thread per store, all at once; then every store is closed."""
    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()

def test_concurrent_writers_at_one_serial_exactly_one_wins(state_url: str, store: StateStore) -> None:
    writers, rounds = 4, 5
    store.commit("race", [], {})
    stores = [open_store(state_url) for _ in range(writers)]
    barrier = threading.Barrier(writers, timeout=60)
    winners: list[tuple[int, int, int]] = []  # (round, writer, serial)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                serial = stores[i].read("race").serial
                barrier.wait()  # every writer has read the same serial before anyone writes
                try:
                    new = stores[i].commit("race", create(f"vm.w{i}-r{r}"), expected_serial=serial)
                    winners.append((r, i, new))
                except StaleStateError:
                    pass
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    run_writers(write, stores)
    assert not errors, errors
    assert sorted(r for r, _, _ in winners) == list(range(rounds))  # exactly one winner per round
    assert sorted(serial for _, _, serial in winners) == list(range(2, rounds + 2))
    state = store.read("race")
    assert state.serial == rounds + 1
    assert sorted(state.resources) == sorted(f"vm.w{i}-r{r}" for r, i, _ in winners)
    assert [(h.serial, h.address) for h in store.history("race")][1:] == [
        (serial, f"vm.w{i}-r{r}") for r, i, serial in sorted(winners)]


def test_concurrent_writers_retrying_lose_no_update(state_url: str, store: StateStore) -> None:
    writers, each = 4, 8
    stores = [open_store(state_url) for _ in range(writers)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for n in range(each):
                while True:  # read, then write at that serial; a writer that lost the race reads again
                    serial = stores[i].read("race").serial
                    try:
                        stores[i].commit("race", create(f"vm.w{i}-{n}"), expected_serial=serial)
                        break
                    except StaleStateError:
                        continue
            stores[i].commit("race", create(f"vm.plain{i}"))  # and without expected_serial, no serial is lost
        except BaseException as exc:
            errors.append(exc)

    run_writers(write, stores)
    assert not errors, errors
    total = writers * (each + 1)
    state = store.read("race")
    assert state.serial == total and len(state.resources) == total
    history = store.history("race", limit=1000)
    assert [h.serial for h in history] == list(range(1, total + 1))  # one line per serial, in order
    assert {h.address for h in history} == set(state.resources)


# settings


def test_settings_are_durable_and_journal_who_and_why(state_url: str, store: StateStore) -> None:
    store.commit("web", create("vm.a"))
    assert store.set_setting("web", "tier.web.size", 3, by="autoscaler", why="cpu 91% > 75% for 5 min") == 2
    assert store.set_setting("web", "tier.web.size", 2, by="alice", why="maintenance") == 3
    assert store.set_setting("web", "note", {"text": "ok", "list": [1, 2]}, by="bob", why="") == 4
    setting = store.settings("web")["tier.web.size"]
    assert (setting.value, setting.by, setting.why, setting.serial) == (2, "alice", "maintenance", 3) and setting.at
    reopened = open_store(state_url)
    try:
        state = reopened.read("web")
        assert state.settings == store.settings("web") and state.serial == 4
        assert state.settings["note"].value == {"text": "ok", "list": [1, 2]}
    finally:
        reopened.close()
    assert store.set_setting("web", "note", None, by="bob", why="done") == 5
    assert list(store.settings("web")) == ["tier.web.size"]
    assert [(h.serial, h.action, h.address, h.before, h.after, h.by, h.why) for h in store.history("web")[1:]] == [
        (2, "setting", "setting:tier.web.size", None, {"value": 3}, "autoscaler", "cpu 91% > 75% for 5 min"),
        (3, "setting", "setting:tier.web.size", {"value": 3}, {"value": 2}, "alice", "maintenance"),
        (4, "setting", "setting:note", None, {"value": {"text": "ok", "list": [1, 2]}}, "bob", ""),
        (5, "setting", "setting:note", {"value": {"text": "ok", "list": [1, 2]}}, None, "bob", "done")]
    assert store.history("web")[0].by == store.history("web")[0].why == ""  # an ordinary step names nobody
    with pytest.raises(StateError, match="a setting is a JSON value"):
        store.set_setting("web", "bad", {1, 2}, by="x", why="y")
    assert store.read("web").serial == 5


# runs


def test_a_runs_writes_name_it_in_the_history(store: StateStore) -> None:
    """Every write a locked run makes (an apply's batches and its outputs, a move, a forget, a setting) names the
    run; writes outside one (a lock break, a bare commit) name none."""
    store.commit("demo", create("vm.z"))
    lock_id = store.acquire_lock("demo", "apply")
    run = RunInfo(lock_id, "alice@host pid 7", "apply", "2025-06-01T00:00:00+00:00")
    assert store.move("demo", [("vm.z", "vm.zed")], expected_serial=1, run=run) == 2
    assert store.commit("demo", create("vm.a"), expected_serial=2, run=run) == 3
    assert store.commit("demo", create("vm.b"), expected_serial=3, run=run) == 4
    assert store.forget("demo", ["vm.zed"], expected_serial=4, run=run) == 5
    assert store.set_setting("demo", "size", 2, by="alice", why="more", expected_serial=5, run=run) == 6
    assert store.commit("demo", [], {"ip": "10.0.0.1"}, expected_serial=6, run=run) == 7
    store.break_lock("demo", lock_id, "ops", why="stuck")
    other = RunInfo(store.acquire_lock("demo", "refresh"), "bob@host pid 8", "refresh", "2025-06-02T00:00:00+00:00")
    assert store.commit("demo", [], {"ip": "10.0.0.2"}, run=other) == 8
    assert [(h.serial, h.action, h.run) for h in store.history("demo")] == [
        (1, "create", None), (2, "move", run), (3, "create", run), (4, "create", run), (5, "forget", run),
        (6, "setting", run), (7, "outputs", run), (7, "force-unlock", None), (8, "outputs", other)]
    assert store.history("demo", limit=1)[0].run == other
    assert store.export_stack("demo").history == store.history("demo")


# forget, unforget, move


def test_forget_keeps_a_tombstone_and_move_follows_dependencies(store: StateStore) -> None:
    web = Recorded("vm.web", "vm", "web", {"memory_mib": 1}, {}, ["network.lan"])
    lan = Recorded("network.lan", "network", "lan", {"mode": "nat"})
    store.commit("d", [Committed("vm.web", Outcome.CREATE, web), Committed("network.lan", Outcome.CREATE, lan)])
    store.record_intents("d", [Intent("network.lan", "network", "lan", Action.UPDATE)])
    assert store.move("d", [("network.lan", "network.front")]) == 2
    state = store.read("d")
    assert sorted(state.resources) == ["network.front", "vm.web"]
    assert state.resources["network.front"].physical == "lan"  # the object keeps its name
    assert state.resources["vm.web"].dependencies == ["network.front"]
    assert list(state.intents) == ["network.front"]
    with pytest.raises(StateError, match="already in the state"):
        store.move("d", [("vm.web", "network.front")])
    with pytest.raises(StateError, match=r"no resource 'vm\.nope'"):
        store.move("d", [("vm.nope", "vm.other")])
    with pytest.raises(StateError, match=r"no resource 'vm\.nope'"):
        store.forget("d", ["vm.nope"])
    assert store.read("d").serial == 2  # a refused edit writes nothing
    assert store.forget("d", ["vm.web"]) == 3
    state = store.read("d")
    assert list(state.resources) == ["network.front"]
    assert [(f.address, f.kind, f.physical, f.properties) for f in state.forgotten] == [
        ("vm.web", "vm", "web", {"memory_mib": 1})]
    store.unforget("d", "vm", "web")
    assert store.read("d").forgotten == []
    assert [(h.serial, h.action, h.address) for h in store.history("d")][-2:] == [(2, "move", "network.front"),
                                                                                   (3, "forget", "vm.web")]


def test_one_name_forgotten_on_two_endpoints_is_two_tombstones(store: StateStore) -> None:
    """The forgotten objects key on the endpoint too: ``web`` let go of on host-a and on host-b are two objects."""
    on_a = Recorded("vm.web-a", "vm", "web", {"memory_mib": 1}, endpoint="host-a")
    on_b = Recorded("vm.web-b", "vm", "web", {"memory_mib": 2}, endpoint="host-b")
    store.commit("d", [Committed(r.address, Outcome.CREATE, r) for r in (on_a, on_b)])
    assert store.forget("d", ["vm.web-a"]) == 2
    assert store.forget("d", ["vm.web-b"]) == 3
    state = store.read("d")
    assert state.resources == {}
    assert sorted((f.endpoint, f.address, f.physical, f.properties) for f in state.forgotten) == [
        ("host-a", "vm.web-a", "web", {"memory_mib": 1}), ("host-b", "vm.web-b", "web", {"memory_mib": 2})]
    assert [(f.record.endpoint, f.record.address) for f in store.export_stack("d").forgotten] == [
        ("host-a", "vm.web-a"), ("host-b", "vm.web-b")]
    store.commit("d", [Committed("vm.web-a", Outcome.IMPORT, on_a)])
    store.unforget("d", "vm", "web", endpoint="host-a")  # `crane import` on host-a leaves host-b's tombstone
    assert [(f.endpoint, f.address) for f in store.read("d").forgotten] == [("host-b", "vm.web-b")]


# copying


def populate(store: StateStore, stack: str) -> None:
    """A stack with something in every part of the state."""
    run = RunInfo("run-1", "alice@host pid 7", "apply", "2025-06-01T00:00:00+00:00")
    store.commit(stack, create("vm.a", "vm.b", "vm.c"), {"ip": "10.0.0.1"}, run=run)
    store.commit(stack, [Committed("vm.a", Outcome.UPDATE, rec("vm.a", 512), {"memory_mib": 256})], run=run)
    store.move(stack, [("vm.b", "vm.bee")])
    store.forget(stack, ["vm.c"])
    store.set_setting(stack, "tier.web.size", 4, by="autoscaler", why="load")
    store.record_intents(stack, [Intent("vm.d", "vm", "d", Action.CREATE, {"pool": "default"})])
    store.break_lock(stack, store.acquire_lock(stack, "apply"), "ops", why="test")


def test_export_and_import_copy_a_stack_whole(tmp_path: Path, store: StateStore) -> None:
    populate(store, "demo")
    store.record_intents("crashed", [Intent("vm.x", "vm", "x", Action.CREATE)])
    dumps = [store.export_stack(name) for name in store.stacks()]
    assert [d.name for d in dumps] == ["crashed", "demo"]
    demo = dumps[1]
    assert demo.serial == 5 and len(demo.history) == 8 and list(demo.settings) == ["tier.web.size"]
    assert [h.run.operation if h.run else None for h in demo.history][:3] == ["apply"] * 3
    other = open_store(f"sqlite:///{tmp_path}/copy.db")
    try:
        other.import_stacks(dumps)
        assert [other.export_stack(d.name) for d in dumps] == dumps
        assert other.read("demo") == store.read("demo")
        with pytest.raises(StateError, match="already holds stack"):
            other.import_stacks(dumps)
    finally:
        other.close()
    with pytest.raises(StateError, match=r"already holds stack\(s\) 'demo'"):
        store.import_stacks([demo])


# schema


def raw_engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def test_a_newer_schema_is_refused(state_url: str, store: StateStore) -> None:
    store.close()
    engine = raw_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE crane_meta SET value = :v WHERE key = 'schema_version'"),
                     {"v": str(SCHEMA_VERSION + 1)})
    engine.dispose()
    with pytest.raises(StateError, match=f"state schema {SCHEMA_VERSION + 1} is newer than this crane"):
        open_store(state_url)


def test_a_version_2_database_opens_and_migrates(state_url: str, store: StateStore) -> None:
    store.commit("demo", create("vm.a"))
    store.forget("demo", ["vm.a"])
    store.close()
    engine = raw_engine(state_url)  # back to the schema of version 2: no settings, no who/why, no endpoints
    with engine.begin() as conn:
        for sql in ("DROP TABLE settings", "DROP TABLE runs", "ALTER TABLE history DROP COLUMN run",
                    "ALTER TABLE history DROP COLUMN who", "ALTER TABLE history DROP COLUMN why",
                    "ALTER TABLE resources DROP COLUMN endpoint", "ALTER TABLE intents DROP COLUMN endpoint",
                    # the endpoint is in the forgotten table's key since version 6: the table is made as it was
                    "CREATE TABLE forgotten_v2 (stack VARCHAR NOT NULL, kind VARCHAR NOT NULL, physical VARCHAR "
                    "NOT NULL, address VARCHAR NOT NULL, properties VARCHAR NOT NULL, at VARCHAR NOT NULL, "
                    "PRIMARY KEY (stack, kind, physical))",
                    "INSERT INTO forgotten_v2 SELECT stack, kind, physical, address, properties, at FROM forgotten",
                    "DROP TABLE forgotten", "ALTER TABLE forgotten_v2 RENAME TO forgotten",
                    "UPDATE crane_meta SET value = '2' WHERE key = 'schema_version'"):
            conn.execute(sqlalchemy.text(sql))
    engine.dispose()
    migrated = open_store(state_url)
    try:
        assert migrated.schema_version() == SCHEMA_VERSION == 10  # type: ignore[attr-defined]
        assert [(h.action, h.by, h.why) for h in migrated.history("demo")] == [("create", "", ""), ("forget", "", "")]
        assert migrated.read("demo").forgotten[0].endpoint == "default"
        assert migrated.set_setting("demo", "k", 1, by="me", why="test") == 3
        assert migrated.settings("demo")["k"].value == 1
    finally:
        migrated.close()


def test_the_holder_is_named_by_user_name_without_user_in_the_environment(store: StateStore,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    held = store.acquire_lock("demo", "apply")
    try:
        info = store.lock_info("demo")
        assert info is not None
        assert info.holder.startswith(f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()} pid ")
    finally:
        store.release_lock("demo", held)
