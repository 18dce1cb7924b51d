"""``crane ipam list/show/release/rm`` over the project's state: pools with their size, leases, free count and use
(and which no one holds a value from); one pool's leases; giving back the lease of a resource `crane state rm`
let go of, and refusing a recorded one's; dropping a pool no one holds a value from, and refusing one with
leases."""

from __future__ import annotations

import json

from crane_iac.ipam.pools import Holder, PoolSpec, Want
from crane_iac.objects import Outcome, Recorded
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed
from tests.conftest import ProjectDir, assert_clean_error, ok


def test_pools_and_leases_are_listed_shown_and_released(project: ProjectDir) -> None:
    project.write_stack("from crane_iac import Network\nNetwork('lan', mode='isolated')\n")
    assert ok(project, "ipam", "list") == "No address pools.\n"
    store = open_store(f"sqlite:///{project.root / '.crane' / 'state.db'}")
    try:
        office = PoolSpec.parse("office", "10.60.0.0/28", reserved=["10.60.0.1"])
        six = PoolSpec.parse("six", "fd00:60::/48", subnet_prefixlen=64)
        store.lease("main", [office], [("office", Want(Holder("main", f"vm.web-{i}", "nic0"))) for i in (1, 2)])
        store.lease("ops", [six], [("six", Want(Holder("ops", "network.lab", "ipv6"), "subnet"))])
        store.commit("main", [Committed("vm.web-1", Outcome.CREATE, Recorded("vm.web-1", "vm", "web-1", {}))])
    finally:
        store.close()
    listed = ok(project, "ipam", "list").splitlines()
    assert listed[0].split() == ["POOL", "NETWORK", "SIZE", "LEASED", "FREE", "USED", "DECLARED", "BY"]
    assert listed[1].split() == ["office", "10.60.0.0/28", "13", "2", "11", "15.4%", "main"]
    assert listed[2].split() == ["six", "fd00:60::/48", "65536", "1", "65535", "0.0%", "ops"]
    shown = ok(project, "ipam", "show", "office").splitlines()
    assert shown[0] == "office: 10.60.0.0/28, 2 of 13 leased, reserved 10.60.0.1/32"
    assert shown[1].split()[:6] == ["10.60.0.2", "vm.web-1", "(nic0)", "stack", "main", "bound"]
    assert shown[2].split()[:6] == ["10.60.0.3", "vm.web-2", "(nic0)", "stack", "main", "planned"]
    as_json = json.loads(ok(project, "ipam", "show", "six", "--json"))
    assert [(x["value"], x["resource"], x["stack"]) for x in as_json["leases"]] == [
        ("fd00:60::/64", "network.lab", "ops")]
    assert_clean_error(project.crane("ipam", "show", "offce"), "no pool 'offce'; the pools are office, six")

    assert_clean_error(project.crane("ipam", "release", "10.60.0.2"), "10.60.0.2 is leased to vm.web-1 in stack main, "
                       "which state still records")
    ok(project, "state", "rm", "vm.web-1")
    assert ok(project, "ipam", "release", "10.60.0.2") == ("Released 10.60.0.2 from pool office (it was leased to "
                                                           "vm.web-1 in stack main).\n")
    assert_clean_error(project.crane("ipam", "release", "10.60.0.2"), "no pool has a lease of 10.60.0.2")
    assert "1 of 13 leased" in ok(project, "ipam", "show", "office")


def test_a_pool_no_one_holds_a_value_from_is_listed_as_unused_and_dropped(project: ProjectDir) -> None:
    from tests.cli.test_pools import DB, LAN, POOLS

    project.write_stack(POOLS + LAN + DB.format(name="db"))
    ok(project, "apply", "--auto-approve")
    assert "Unused" not in ok(project, "ipam", "list")
    assert_clean_error(project.crane("ipam", "rm", "office"), "pool 'office' still has 2 lease(s): 10.20.1.0/24 to "
                       "network.lan (ipv4) in stack main, bound; 10.20.1.2 to container.db (ipv4[0]) in stack main, "
                       "bound. A pool goes only once nothing holds a value from it", "nothing was removed")
    project.write_stack(POOLS + LAN)
    ok(project, "apply", "--auto-approve")  # the container goes, and its lease with it
    assert_clean_error(project.crane("ipam", "rm", "office:10.20.1.0/24"), "pool 'office:10.20.1.0/24' is the pool "
                       "of network.lan in stack main, whose subnet 10.20.1.0/24 is still leased from pool 'office'")
    project.write_stack(POOLS)
    ok(project, "apply", "--auto-approve")
    listed = ok(project, "ipam", "list")
    assert listed.splitlines()[-1] == ("Unused (no stack holds a value from them; `crane ipam rm POOL` drops one): "
                                       "office, six"), listed
    assert {r["pool"]: r["unused"] for r in json.loads(ok(project, "ipam", "list", "--json"))} == {
        "office": True, "office:10.20.1.0/24": True, "six": True, "six:fd00:20::/64": True}
    removed = json.loads(ok(project, "ipam", "rm", "office", "--json"))["removed"]
    assert [(r["pool"], r["parent"]) for r in removed] == [("office:10.20.1.0/24", "office"), ("office", None)]
    assert ok(project, "ipam", "rm", "six") == ("Removed pool six (fd00:20::/48), with its networks' pools "
                                               "six:fd00:20::/64. A stack that declares it again makes it anew.\n")
    assert_clean_error(project.crane("ipam", "rm", "six"), "no pool 'six'; the pools are none")
    assert ok(project, "ipam", "list") == "No address pools.\n"
    project.write_stack(POOLS + LAN + DB.format(name="db"))  # declared again, a pool is made anew
    ok(project, "apply", "--auto-approve")
    assert [r["pool"] for r in json.loads(ok(project, "ipam", "list", "--json"))] == [
        "office", "office:10.20.1.0/24", "six", "six:fd00:20::/64"]
