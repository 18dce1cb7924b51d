"""Address pools and leases in the state store, on every backend (SQLite and the real PostgreSQL the tests start):
values chosen and written in one transaction, a holder keeping its value, pools shared by stacks and checked
against each other, leases bound by the apply that makes their resource, released by the one that deletes it,
moved with it, reclaimed when never applied; and eight processes allocating from one pool at once, with no value
handed out twice and no error but the pool's own exhaustion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crane_iac.ipam.pools import Holder, IpamError, Lease, PoolSpec, Want
from crane_iac.objects import Outcome, Recorded
from crane_iac.state.base import Committed, StateStore

REPO = Path(__file__).resolve().parents[2]
FRONT = PoolSpec.parse("front", "10.40.0.0/29")  # .1 to .6


def wants(stack: str, *addresses: str) -> list[tuple[str, Want]]:
    return [("front", Want(Holder(stack, a, "nic0"))) for a in addresses]


def values(store: StateStore, stack: str, *addresses: str) -> list[str]:
    got = store.lease(stack, [FRONT], wants(stack, *addresses))
    return [got["front", Holder(stack, a, "nic0")] for a in addresses]


def test_values_are_written_and_a_holder_keeps_its_own(store: StateStore) -> None:
    assert values(store, "main", "vm.a", "vm.b") == ["10.40.0.1", "10.40.0.2"]
    assert values(store, "web", "vm.a") == ["10.40.0.3"]  # another stack's vm.a is another holder
    assert values(store, "main", "vm.c", "vm.b") == ["10.40.0.4", "10.40.0.2"]
    leases = store.ip_leases(pool="front")
    assert [(r.value, r.stack, r.address, r.state) for r in leases] == [
        ("10.40.0.1", "main", "vm.a", "planned"), ("10.40.0.2", "main", "vm.b", "planned"),
        ("10.40.0.3", "web", "vm.a", "planned"), ("10.40.0.4", "main", "vm.c", "planned")]
    (pool,) = store.ip_pools()
    assert (pool.name, pool.network, pool.declared_by, pool.family) == ("front", "10.40.0.0/29", "main", 4)


def test_an_apply_binds_releases_and_moves_leases_with_their_resources(store: StateStore) -> None:
    values(store, "main", "vm.a", "vm.b", "vm.c")
    made = [Committed(a, Outcome.CREATE, Recorded(a, "vm", a[3:], {})) for a in ("vm.a", "vm.b")]
    store.commit("main", made)
    assert {r.address: r.state for r in store.ip_leases()} == {"vm.a": "bound", "vm.b": "bound", "vm.c": "planned"}
    store.move("main", [("vm.a", "vm.web")])
    assert values(store, "main", "vm.web") == ["10.40.0.1"]  # the same address under the new name
    store.commit("main", [Committed("vm.b", Outcome.DELETE, None, {})])
    assert [r.address for r in store.ip_leases()] == ["vm.web", "vm.c"]
    # vm.c was planned and never made: the apply whose plan lists it gives it back, with its last commit and only
    # while vm.c still holds that value (a lease named with another value, or another holder's, stays)
    other = [Lease("front", "10.40.0.4", Holder("main", "vm.c", "nic0")),
             Lease("front", "10.40.0.1", Holder("main", "vm.c", "nic0")),
             Lease("front", "10.40.0.3", Holder("main", "vm.c", "nic1"))]
    store.commit("main", [], released=other)
    assert [r.value for r in store.ip_leases()] == ["10.40.0.1", "10.40.0.3"]
    serial = store.read("main").serial
    store.commit("main", [], released=[Lease("front", "10.40.0.3", Holder("main", "vm.c", "nic0"))])
    assert [r.value for r in store.ip_leases()] == ["10.40.0.1"]
    (line,) = [e for e in store.history("main") if e.serial == serial + 1 and e.action == "release"]
    assert (line.address, line.before) == ("vm.c", {"pool": "front", "value": "10.40.0.3", "field": "nic0"})
    assert values(store, "main", "vm.d") == ["10.40.0.2"]  # what was given back is handed out again


def test_a_forgotten_resources_lease_is_released_by_hand_and_a_recorded_ones_is_not(store: StateStore) -> None:
    values(store, "main", "vm.a")
    store.commit("main", [Committed("vm.a", Outcome.CREATE, Recorded("vm.a", "vm", "a", {}))])
    with pytest.raises(IpamError, match=r"10\.40\.0\.1 is leased to vm\.a in stack main, which state still records"):
        store.release_lease("front", "10.40.0.1")
    store.forget("main", ["vm.a"])
    assert store.ip_leases()[0].state == "bound"  # state rm lets the VM go, not its address
    assert store.release_lease("front", "10.40.0.1").address == "vm.a"
    assert store.ip_leases() == []
    with pytest.raises(IpamError, match=r"pool 'front' has no lease of 10\.40\.0\.1"):
        store.release_lease("front", "10.40.0.1")


def test_pools_are_shared_and_checked_against_each_other(store: StateStore) -> None:
    values(store, "main", "vm.a")
    other = PoolSpec.parse("front", "10.40.0.0/28")
    with pytest.raises(IpamError, match=r"pool 'front' is declared by stack main as 10\.40\.0\.0/29 .* and by "
                                        r"stack web as 10\.40\.0\.0/28"):
        store.lease("web", [other], [("front", Want(Holder("web", "vm.x", "nic0")))])
    overlapping = PoolSpec.parse("back", "10.40.0.0/24")
    with pytest.raises(IpamError, match=r"pool 'back' \(10\.40\.0\.0/24\) overlaps pool 'front' \(10\.40\.0\.0/29\), "
                                        r"declared by stack main"):
        store.lease("web", [overlapping], [("back", Want(Holder("web", "vm.x", "nic0")))])
    assert [p.name for p in store.ip_pools()] == ["front"]  # nothing was written by the refused calls
    with pytest.raises(IpamError, match=r"pool 'front' \(10\.40\.0\.0/29\) is exhausted: it has 6 addresses, "
                                        r"leased 1 by stack main; 6 more wanted"):
        values(store, "web", *(f"vm.n{i}" for i in range(6)))
    assert len(store.ip_leases()) == 1


ALLOCATE = """
import json, sys
from crane_iac.errors import CraneError
from crane_iac.ipam.pools import Holder, PoolSpec, Want
from crane_iac.state.backends import open_store
url, stack, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(url)
pool = PoolSpec.parse("shared", "10.50.0.0/24")
try:
    got = store.lease(stack, [pool], [("shared", Want(Holder(stack, f"vm.w{i}", "nic0"))) for i in range(count)])
    print(json.dumps(sorted(got.values())))
except CraneError as exc:
    print(json.dumps({"error": str(exc)}))
finally:
    store.close()
"""


@pytest.mark.parametrize(("count", "exhausted"), [(25, False), (40, True)], ids=["fits", "exhausts"])
def test_eight_processes_at_once_never_share_a_value(state_url: str, count: int, exhausted: bool) -> None:
    """8 processes each lease ``count`` addresses of one /24 (254) at the same moment: 200 fit; 320 do not, and then
    every process either gets all it asked for or fails with the pool's exhaustion, never a lock error."""
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATE, state_url, f"s{n}", str(count)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    granted = [r for r in results if isinstance(r, list)]
    refused = [r["error"] for r in results if isinstance(r, dict)]
    assert all(len(r) == count for r in granted)
    every = [v for r in granted for v in r]
    assert len(every) == len(set(every))  # no value twice
    assert all("pool 'shared' (10.50.0.0/24) is exhausted" in e for e in refused), refused
    if exhausted:
        assert len(granted) == 254 // count and len(refused) == 8 - 254 // count
    else:
        assert len(granted) == 8 and not refused
