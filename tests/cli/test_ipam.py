"""``crane ipam list/show/release`` over the project's state: pools with their size, leases, free count and use;
one pool's leases; giving back the lease of a resource `crane state rm` let go of, and refusing a recorded one's."""

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
