"""The replicated loops' lease with its fencing token, and what the loops keep between periods, on both backends:
one run leads; a lapsed lease (``ttl=0``: lapsed at once, no waiting) is taken over with the token one higher; a
write carrying the old token is refused inside its transaction and writes nothing; a run that resigns lets a standby
in at once; many runs taking a lapsed lease at once leave exactly one leader."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crane_iac.errors import FencedError
from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore

ROLE = "autoscale"
SIZE = "appdomain.shop/web.size"


def test_one_leads_and_the_others_see_it(store: StateStore) -> None:
    first = store.lead("shop", ROLE, holder_id="a", ttl=30)
    assert (first.holder_id, first.token) == ("a", 1) and 25 < first.remaining <= 30
    other = store.lead("shop", ROLE, holder_id="b", ttl=30)
    assert (other.holder_id, other.token) == ("a", 1)  # b stands by; a's lease untouched
    again = store.lead("shop", ROLE, holder_id="a", ttl=30)
    assert (again.holder_id, again.token) == ("a", 1)  # renewed, the same token
    seen = store.leader("shop", ROLE)
    assert seen is not None and (seen.holder_id, seen.token, seen.since) == ("a", 1, first.since)
    assert store.lead("other", ROLE, holder_id="b", ttl=30).holder_id == "b"  # one lease per stack
    assert store.leader("nobody", ROLE) is None


def test_a_lapsed_lease_is_taken_over_and_the_deposed_leaders_writes_are_refused(store: StateStore) -> None:
    old = store.lead("shop", ROLE, holder_id="a", ttl=0).fence  # lapses at once: a leader that stopped renewing
    assert store.set_setting("shop", SIZE, 3, by="autoscaler", why="scale-out", fence=old,
                             memory={SIZE: {"history": {"last_direction": "out"}}}) == 1
    new = store.lead("shop", ROLE, holder_id="b", ttl=30)
    assert (new.holder_id, new.token) == ("b", 2)
    with pytest.raises(FencedError, match=r"token 1\) no longer leads: .* \(token 2\) took the lease"):
        store.set_setting("shop", SIZE, 4, by="autoscaler", why="a stale scale-out", fence=old,
                          memory={SIZE: {"history": {"last_direction": "stale"}}})
    with pytest.raises(FencedError):
        store.remember("shop", {SIZE: {"history": {}}}, fence=old)
    # nothing of either write: the size, the serial, the history, the memory are the first leader's
    assert store.read("shop").serial == 1 and store.settings("shop")[SIZE].value == 3
    assert [h.why for h in store.history("shop")] == ["scale-out"]
    assert store.memory("shop") == {SIZE: {"history": {"last_direction": "out"}}}
    # the old leader comes back: it stands by (its lease is b's now), and the new leader writes
    assert store.lead("shop", ROLE, holder_id="a", ttl=30).holder_id == "b"
    assert store.set_setting("shop", SIZE, 4, by="autoscaler", why="scale-out", fence=new.fence,
                             memory={SIZE: {"history": {}}}) == 2
    store.remember("shop", {"other": [1, 2]}, fence=new.fence)
    assert store.memory("shop") == {SIZE: {"history": {}}, "other": [1, 2]}


def test_resigning_lets_a_standby_in_at_once(store: StateStore) -> None:
    store.lead("shop", ROLE, holder_id="a", ttl=30)
    store.resign("shop", ROLE, holder_id="b")  # not b's to give up: nothing
    assert store.lead("shop", ROLE, holder_id="b", ttl=30).holder_id == "a"
    store.resign("shop", ROLE, holder_id="a")
    taken = store.lead("shop", ROLE, holder_id="b", ttl=30)
    assert (taken.holder_id, taken.token) == ("b", 2)


def test_a_lease_whose_holder_died_on_this_host_is_free_at_once_on_sqlite_only(store: StateStore,
                                                                               state_url: str) -> None:
    """SQLite state is one machine's: a holder that is gone is known to be. A server's database is shared by
    machines, whose processes this one cannot see: there the lease lapses by time alone."""
    script = ("from crane_iac.state.backends import open_store; import sys; s = open_store(sys.argv[1]); "
              "s.lead('shop', 'autoscale', holder_id='dead', ttl=300); s.close()")
    subprocess.run([sys.executable, "-c", script, state_url], check=True, timeout=60)
    seen = store.lead("shop", ROLE, holder_id="b", ttl=30)
    if state_url.startswith("sqlite"):
        assert (seen.holder_id, seen.token) == ("b", 2)
    else:
        assert (seen.holder_id, seen.token) == ("dead", 1) and seen.remaining > 250


def test_many_runs_taking_a_lapsed_lease_at_once_leave_one_leader(state_url: str) -> None:
    stores = [open_store(state_url) for _ in range(6)]
    try:
        stores[0].lead("shop", ROLE, holder_id="gone", ttl=0)
        start = threading.Barrier(len(stores))
        seen: dict[str, int] = {}

        def take(i: int) -> None:
            start.wait()
            leader = stores[i].lead("shop", ROLE, holder_id=f"r{i}", ttl=30)
            seen[f"r{i}"] = leader.token if leader.holder_id == f"r{i}" else 0

        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [who for who, token in seen.items() if token]
        assert len(seen) == len(stores) and len(winners) == 1 and seen[winners[0]] == 2, seen
        assert stores[0].leader("shop", ROLE).holder_id == winners[0]  # type: ignore[union-attr]
    finally:
        for s in stores:
            s.close()


def test_the_memory_goes_with_a_stack_copied_to_another_store(store: StateStore, tmp_path: Path) -> None:
    store.remember("shop", {SIZE: {"history": {"last_action_at": 12.5}}})
    dump = store.export_stack("shop")
    assert dump.memory == {SIZE: {"history": {"last_action_at": 12.5}}}
    target = open_store(f"sqlite:///{tmp_path}/copy.db")
    try:
        target.import_stacks([dump])
        assert target.memory("shop") == dump.memory and target.leader("shop", ROLE) is None
    finally:
        target.close()
