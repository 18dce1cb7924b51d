"""Address pools in stacks, end to end on the sandbox: values chosen at plan time and shown, kept across plans,
applies, reorderings and moved(); a pool shared by two stacks; a lease given back only when the delete is
applied, and a plan's lease never applied reclaimed by the next apply; errors at plan time with nothing touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, assert_clean_error, ok

POOLS = '''from crane_iac import IPv4Pool, IPv6Pool, Network, Container, moved
office = IPv4Pool("office", cidr="10.20.0.0/16", subnet_prefixlen=24, reserved=["10.20.0.0/24"])
six = IPv6Pool("six", prefix="fd00:20::/48")
'''
LAN = 'lan = Network("lan", mode="isolated", ipv4=office.subnet(), ipv6=six.subnet())\n'
DMZ = 'dmz = Network("dmz", mode="isolated", ipv4=office.subnet())\n'
DB = 'Container("{name}", networks=[lan], ipv4=[lan.lease()], init=["/bin/sh"], memory_mib=64)\n'
CACHE = 'Container("cache", networks=[lan, dmz], ipv4=[lan.lease(), dmz.lease()], init=["/bin/sh"], memory_mib=64)\n'


def leases(project: ProjectDir, pool: str) -> dict[str, str]:
    """resource (field) → value, of one pool."""
    shown = json.loads(ok(project, "ipam", "show", pool, "--json"))
    return {f"{x['resource']} ({x['slot']})": x["value"] for x in shown["leases"]}


def nic_addresses(project: ProjectDir, address: str) -> list[str]:
    return [nic["ipv4"] for nic in json.loads(ok(project, "state", "show", address))["properties"]["nics"]]


def test_values_are_chosen_at_plan_time_and_kept(project: ProjectDir) -> None:
    project.write_stack(POOLS + LAN + DMZ + DB.format(name="db") + CACHE)
    plan = " ".join(ok(project, "plan").split())  # the attributes without their alignment
    assert "ipv4 = 10.20.1.0/24" in plan and "ipv6 = fd00:20::/64" in plan and "ipv4 = 10.20.2.0/24" in plan
    assert '"ipv4": "10.20.1.2"' in plan and '"ipv4": "10.20.1.3"' in plan and '"ipv4": "10.20.2.2"' in plan
    assert " ".join(ok(project, "plan").split()) == plan  # the plan leased them: the same values again
    ok(project, "apply", "--auto-approve")
    assert nic_addresses(project, "container.cache") == ["10.20.1.3", "10.20.2.2"]
    assert project.crane("plan", "--detailed-exitcode").code == 0
    # reordered, the stack keeps every value: a value belongs to a resource's field, not to its place in the file
    project.write_stack(POOLS + DMZ + LAN + CACHE + DB.format(name="db"))
    assert project.crane("plan", "--detailed-exitcode").code == 0
    assert leases(project, "office") == {"network.lan (ipv4)": "10.20.1.0/24", "network.dmz (ipv4)": "10.20.2.0/24"}
    # the network's DHCP server keeps to the half its hosts' leases are not in
    assert "<range start='10.20.1.128' end='10.20.1.254'/>" in project.sandbox().networkLookupByName("lan").XMLDesc()


def test_a_moved_resource_keeps_its_address(project: ProjectDir) -> None:
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    ok(project, "apply", "--auto-approve")
    project.write_stack(POOLS + LAN + DB.format(name="database") + 'moved("container.db", "container.database")\n')
    plan = ok(project, "plan")
    assert "container.db → container.database" in plan or "moved" in plan, plan
    assert "to replace" in plan and "0 to replace" in plan and "0 to create" in plan, plan
    ok(project, "apply", "--auto-approve")
    assert leases(project, "office:10.20.1.0/24") == {"container.database (ipv4[0])": "10.20.1.2"}


def test_a_lease_goes_back_with_the_applied_delete_and_a_plan_never_applied_is_reclaimed(project: ProjectDir) -> None:
    project.write_stack(POOLS + LAN + DB.format(name="db") + DB.format(name="db2"))
    ok(project, "apply", "--auto-approve")
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    ok(project, "plan")  # planned, not applied: db2 keeps its address
    assert "container.db2 (ipv4[0])" in leases(project, "office:10.20.1.0/24")
    project.write_stack(POOLS + LAN + DB.format(name="db") + DB.format(name="db3"))
    ok(project, "plan")  # db3's lease is planned (db2 still holds .3)
    assert leases(project, "office:10.20.1.0/24")["container.db3 (ipv4[0])"] == "10.20.1.4"
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    ok(project, "apply", "--auto-approve")  # deletes db2; db3 was never made: its planned lease is reclaimed
    assert leases(project, "office:10.20.1.0/24") == {"container.db (ipv4[0])": "10.20.1.2"}


def test_a_pool_is_shared_by_stacks_and_must_be_declared_alike(project: ProjectDir) -> None:
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.other]\nfile = "stacks/other.py"\n')
    project.write_stack(POOLS + LAN)
    project.write_stack(POOLS + LAN.replace('"lan"', '"lan2"'), name="other.py")
    ok(project, "apply", "--auto-approve", "--stack", "main")
    ok(project, "apply", "--auto-approve", "--stack", "other")
    shown = json.loads(ok(project, "ipam", "show", "office", "--json"))["leases"]
    assert sorted((x["stack"], x["resource"], x["value"]) for x in shown) == [
        ("main", "network.lan", "10.20.1.0/24"), ("other", "network.lan2", "10.20.2.0/24")]
    project.write_stack(POOLS.replace("10.20.0.0/16", "10.20.0.0/15") + LAN.replace('"lan"', '"lan2"') + DMZ,
                        name="other.py")
    assert_clean_error(project.crane("plan", "--stack", "other"), "pool 'office' is declared by stack main as "
                       "10.20.0.0/16", "and by stack other as 10.20.0.0/15")


def test_pool_errors_come_at_plan_time_with_nothing_touched(project: ProjectDir) -> None:
    tiny = 'from crane_iac import IPv4Pool, Network\np = IPv4Pool("tiny", cidr="10.30.0.0/23", subnet_prefixlen=24)\n'
    project.write_stack(tiny + "".join(f'Network("n{i}", mode="isolated", ipv4=p.subnet())\n' for i in range(3)))
    assert_clean_error(project.crane("apply", "--auto-approve"), "main.py:5: pool 'tiny' (10.30.0.0/23) is exhausted: "
                       "this stack takes more /24 subnets than it has")
    assert not (project.root / ".crane" / "sandbox.xml").exists()  # nothing was made
    assert "No address pools." in ok(project, "ipam", "list")
    # a pool other stacks hold: the database says who
    project.write_stack(tiny + 'Network("n0", mode="isolated", ipv4=p.subnet())\n', name="other.py")
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.other]\nfile = "stacks/other.py"\n')
    ok(project, "apply", "--auto-approve", "--stack", "other")
    project.write_stack(tiny + "".join(f'Network("n{i}", mode="isolated", ipv4=p.subnet())\n' for i in range(2)))
    assert_clean_error(project.crane("plan", "--stack", "main"), "pool 'tiny' (10.30.0.0/23) is exhausted: it has 2 "
                       "/24 subnets, leased 1 by stack other; 2 more wanted (network.n0, network.n1)")
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    project.write_stack('from crane_iac import IPv4Pool\nIPv4Pool("bad", cidr="10.30.0.1/24")\n')
    assert_clean_error(project.crane("plan"), "main.py:2: pool.bad: pool 'bad': '10.30.0.1/24' is not a network")
    project.write_stack('from crane_iac import IPv6Pool\nIPv6Pool("v6", prefix="10.30.0.0/24")\n')
    assert_clean_error(project.crane("plan"), "main.py:2: pool.v6: pool 'v6': '10.30.0.0/24' is an IPv4 network; an "
                       "IPv6 pool needs an IPv6 prefix")
    project.write_stack('from crane_iac import Network\nlan = Network("lan", mode="isolated", ipv4="10.9.0.0/24")\n'
                        'from crane_iac import Container\nContainer("c", networks=[lan], ipv4=[lan.lease()], '
                        'init=["/bin/sh"], memory_mib=64)\n')
    assert_clean_error(project.crane("plan"), "network.lan.lease(): its ipv4 subnet does not come from an address "
                       "pool")


def test_the_guides_stack_plans_as_written(project: ProjectDir) -> None:
    from tests.test_docs import blocks, page

    stack, outputs = blocks("python", page("guides/address-pools.md"))  # the second goes on with the first
    project.write_stack(stack + outputs)
    plan = " ".join(ok(project, "plan").split())
    assert "ipv4 = 10.20.1.0/24" in plan and '"ipv4": "10.20.1.2"' in plan and "vlan = [100, 200]" in plan, plan
    # a container's ipv6 field is known at plan time, a new VM's ipv6 output after apply
    assert 'init_env = {"API": "(known after apply)", "STORE": "fd00:20::' in plan, plan


def test_validate_takes_stand_ins_and_opens_no_state(project: ProjectDir) -> None:
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    assert "is valid: 2 resources" in ok(project, "validate")
    assert not (project.root / ".crane" / "state.db").exists()


def test_a_named_address_on_a_pools_network_is_leased_and_checked(project: ProjectDir) -> None:
    named = 'Container("{name}", networks=[lan], ipv4=["{ip}"], init=["/bin/sh"], memory_mib=64)\n'
    auto = 'Container("auto", networks=[lan], init=["/bin/sh"], memory_mib=64)\n'  # no ipv4: one is leased
    project.write_stack(POOLS + LAN + named.format(name="fixed", ip="10.20.1.2") + auto)
    ok(project, "apply", "--auto-approve")
    assert leases(project, "office:10.20.1.0/24") == {"container.fixed (ipv4[0])": "10.20.1.2",
                                                     "container.auto (ipv4[0])": "10.20.1.3"}
    assert nic_addresses(project, "container.auto") == ["10.20.1.3"]
    for ip, problem in [("10.20.1.200", "'10.20.1.200' is reserved in pool 'office:10.20.1.0/24'"),  # DHCP's half
                        ("10.20.1.3", "'10.20.1.3' is leased from pool 'office:10.20.1.0/24' already, to "
                                      "container.auto (ipv4[0]) in stack main")]:
        project.write_stack(POOLS + LAN + named.format(name="fixed", ip="10.20.1.2") + auto
                            + named.format(name="other", ip=ip))
        assert_clean_error(project.crane("plan"), f"container.other: {problem}")
    # naming another free address moves the holder's lease to it (the container restarts with it)
    project.write_stack(POOLS + LAN + named.format(name="fixed", ip="10.20.1.9") + auto)
    assert '~ container.fixed  nics[0]["ipv4"]: 10.20.1.2 → 10.20.1.9' in ok(project, "plan")
    ok(project, "apply", "--auto-approve")
    assert leases(project, "office:10.20.1.0/24")["container.fixed (ipv4[0])"] == "10.20.1.9"


def test_a_vms_nics_on_a_pools_network_get_a_dhcp_reservation(project: ProjectDir) -> None:
    vm = 'VM("{name}", vcpus=1, memory_mib=128, networks=[lan{more}]{extra})\n'
    fixed = 'wan = Network("wan", mode="isolated", ipv4="10.9.0.0/24")\n'
    project.write_stack(POOLS.replace("import IPv4Pool", "import VM, IPv4Pool") + LAN + fixed
                        + vm.format(name="web", more=", wan", extra="")
                        + vm.format(name="db", more="", extra=', nic_ipv4=["10.20.1.20"]'))
    plan = ok(project, "plan")
    assert '"ipv4": "10.20.1.2", "ipv6": "fd00:20::5054:ff:fe' in plan and '"ipv4": "10.20.1.20"' in plan, plan
    ok(project, "apply", "--auto-approve")
    xml = project.sandbox().networkLookupByName("lan").XMLDesc()
    web = json.loads(ok(project, "state", "show", "vm.web"))["properties"]["nics"]
    assert f"<host mac='{web[0]['mac']}' ip='10.20.1.2'/>" in xml and "ip='10.20.1.20'" in xml
    assert "ipv4" not in web[1]  # the fixed network's NIC reserves nothing
    assert project.crane("plan", "--detailed-exitcode").code == 0  # read back from the network's host entries
    assert leases(project, "office:10.20.1.0/24") == {"vm.web (nic_ipv4[0])": "10.20.1.2",
                                                     "vm.db (nic_ipv4[0])": "10.20.1.20"}
    ok(project, "destroy", "--auto-approve", "--target", "vm.web")
    assert "10.20.1.2'" not in project.sandbox().networkLookupByName("lan").XMLDesc()
    assert "vm.web (nic_ipv4[0])" not in leases(project, "office:10.20.1.0/24")


def test_an_apply_killed_at_any_point_leaves_no_lease_lost_or_twice(project: ProjectDir) -> None:
    """SIGKILL at each failpoint of an apply of hosts on a pool's network: the next apply finishes the job, every
    host ends up recorded with the address its lease holds, no address is leased twice, and nothing planned is
    left behind."""
    import signal

    hosts = POOLS + LAN + "".join(DB.format(name=f"h{i}") for i in range(4))
    for failpoint in ("after-intents", "after-mutation:2", "after-checkpoint", "after-commit"):
        project.write_stack(hosts)
        killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint})
        assert killed.code == -signal.SIGKILL, (failpoint, killed)
        ok(project, "apply", "--auto-approve")
        held = leases(project, "office:10.20.1.0/24")
        assert sorted(held.values()) == [f"10.20.1.{i}" for i in range(2, 6)], (failpoint, held)
        for i in range(4):
            assert nic_addresses(project, f"container.h{i}") == [held[f"container.h{i} (ipv4[0])"]], failpoint
        shown = json.loads(ok(project, "ipam", "show", "office:10.20.1.0/24", "--json"))["leases"]
        assert {x["state"] for x in shown} == {"bound"}, (failpoint, shown)
        assert project.crane("plan", "--detailed-exitcode").code == 0
        ok(project, "destroy", "--auto-approve")
        assert leases(project, "office:10.20.1.0/24") == {}, failpoint


def runs_of(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each run of the stack from now on had stand-ins (``provisional``), in order."""
    import crane_iac.loader

    runs: list[bool] = []
    real = crane_iac.loader.load_stack

    def counted(*args: object, **kwargs: object) -> object:
        loaded = real(*args, **kwargs)  # type: ignore[arg-type]
        runs.append(loaded.provisional)
        return loaded

    monkeypatch.setattr(crane_iac.loader, "load_stack", counted)
    return runs


def test_a_first_plan_that_leases_what_stood_in_runs_the_stack_once(project: ProjectDir,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Subnets and the addresses taken from them are leased in one round (the addresses once their network's
    subnet is). A pool no other stack leases from hands out the values that stood in, so the stack does not run
    again; where another stack holds the stand-ins, it runs again with the values leased; a re-plan runs it once."""
    runs = runs_of(monkeypatch)
    project.write_stack(POOLS + LAN + DMZ + DB.format(name="db") + CACHE)
    ok(project, "plan")
    assert runs == [True], runs
    runs.clear()
    ok(project, "plan")
    assert runs == [False], runs
    # another stack takes the values this one's stand-ins would be: its first plan runs the stack again with its own
    project.write_config('default_stack = "main"\n[stacks.main]\nfile = "stacks/main.py"\n'
                         '[stacks.other]\nfile = "stacks/other.py"\n')
    project.write_stack(POOLS + LAN.replace('"lan"', '"lan2"').replace("lan =", "lan2 =")
                        + DB.format(name="db2").replace("lan", "lan2"), name="other.py")
    runs.clear()
    plan = " ".join(ok(project, "plan", "--stack", "other").split())
    assert runs == [True, False], runs
    assert "ipv4 = 10.20.3.0/24" in plan and '"ipv4": "10.20.3.2"' in plan, plan  # not main's 10.20.1.0/24


STACKS_WITH_POOLS = {
    "subnets and their addresses": POOLS + LAN + DMZ + DB.format(name="db") + CACHE,
    "SLAAC addresses and named ones": POOLS.replace("import IPv4Pool", "import VM, IPv4Pool") + LAN
    + 'VM("web", vcpus=1, memory_mib=128, networks=[lan])\n'
    + 'Container("db", networks=[lan], ipv4=["10.20.1.9/24"], ipv6=["fd00:20::99"], init=["/bin/sh"], '
      'memory_mib=64)\n'
    + 'ext = Network("ext", mode="isolated", ipv4="10.30.0.0/24")\n'
    + 'hosts = IPv4Pool("hosts", cidr="10.30.0.0/25", subnet_prefixlen=28, reserved=["10.30.0.0/28"])\n'
    + 'Container("cache", networks=[ext], ipv4=[hosts.address()], init=["/bin/sh"], memory_mib=64)\n',
}


@pytest.mark.parametrize("stack", STACKS_WITH_POOLS.values(), ids=STACKS_WITH_POOLS.keys())
def test_a_first_plan_that_runs_the_stack_once_loads_what_a_second_run_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: str) -> None:
    """The stack run with stand-ins, once the values leased are those that stood in, stands for the run with the
    leases (crane_iac/loader.py ``with_leases``): the same resources with the same properties, wants and pools
    as a second run gives on a copy of the project (the allocator is deterministic)."""
    import crane_iac.loader
    from crane_iac.engine.workspace import Workspace

    def first_plan(root: Path) -> crane_iac.loader.LoadedStack:
        root.mkdir()
        project = ProjectDir(root)
        project.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
        project.write_stack(stack)
        with Workspace.open(root, "main") as ws:
            ws.store.read("main")  # the state database made, as a plan that runs the stack beside it finds it
            return ws.early_load()[0]

    once = first_plan(tmp_path / "once")
    monkeypatch.setattr(crane_iac.loader, "with_leases", lambda loaded, leases: None)
    twice = first_plan(tmp_path / "twice")

    def shape(loaded: crane_iac.loader.LoadedStack) -> object:
        return ([(d.address, d.physical, d.properties, d.dependencies) for d in loaded.desired], loaded.outputs,
                sorted(map(repr, loaded.lease_wants)), sorted(map(repr, loaded.pools)), loaded.pool_parents,
                loaded.deferred_wants, loaded.provisional)

    assert not once.provisional and shape(once) == shape(twice)
def test_a_value_no_longer_taken_from_a_pool_goes_back_with_an_apply_of_a_state_only_plan(project: ProjectDir) -> None:
    """A network whose ipv6 subnet no longer comes from a pool (the same subnet, named): nothing on the hypervisor
    changes, yet the lease must go. The plan lists it as a state-only change (so it is not "No changes"), a plan
    not applied gives nothing back, and the apply does, journalled; the next plan has no changes."""
    project.write_stack(POOLS + LAN)
    ok(project, "apply", "--auto-approve")
    assert leases(project, "six") == {"network.lan (ipv6)": "fd00:20::/64"}
    project.write_stack(POOLS + LAN.replace("ipv6=six.subnet()", 'ipv6="fd00:20::/64"'))
    plan = ok(project, "plan")
    assert "Leases given back to their pools (state only: nothing on the hypervisor changes" in plan, plan
    assert ("fd00:20::/64 of pool six, leased to network.lan (ipv6): the stack's resource no longer takes it from "
            "the pool") in plan, plan
    # the network's note of its leased subnets changes in crane's record only (its XML is the same)
    assert "~ network.lan  leases: list, +0 −1 entries  # recorded in state only; nothing on the hypervisor " \
           "changes" in plan, plan
    assert "0 to create, 1 to update, 0 to replace, 0 to delete, 1 lease(s) to give back." in plan, plan
    assert project.crane("plan", "--detailed-exitcode").code == 2
    released = json.loads(ok(project, "plan", "--json"))["leases_released"]
    assert released == [{"pool": "six", "value": "fd00:20::/64", "address": "network.lan", "slot": "ipv6",
                         "why": "the stack's resource no longer takes it from the pool"}]
    assert leases(project, "six") == {"network.lan (ipv6)": "fd00:20::/64"}  # a plan gives nothing back
    applied = ok(project, "apply", "--auto-approve")
    assert "Apply complete: 1 updated, 1 lease given back" in applied, applied
    assert leases(project, "six") == {}
    history = ok(project, "state", "history")
    assert "release" in history and "network.lan" in history, history
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_a_saved_plans_releases_are_applied_and_a_crash_before_them_loses_none(project: ProjectDir) -> None:
    """A plan never applied leased db3 a value; the stack drops db3: the next plan lists the lease (nothing on the
    hypervisor changes), an apply killed before its last commit gives nothing back and the plan after it lists the
    same lease again, and the saved plan's apply gives it back."""
    import signal

    project.write_stack(POOLS + LAN + DB.format(name="db") + DB.format(name="db3"))
    ok(project, "apply", "--auto-approve", "--target", "container.db")
    assert "container.db3 (ipv4[0])" in leases(project, "office:10.20.1.0/24")  # planned, never made
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    listed = ("10.20.1.3 of pool office:10.20.1.0/24, leased to container.db3 (ipv4[0]): planned for a resource "
              "the stack does not declare and state does not record")
    plan = ok(project, "plan")
    # its IPv4 address, and the SLAAC address it leased on the network's IPv6 subnet
    assert listed in plan and "leased to container.db3 (ipv6[0]): planned for a resource" in plan
    assert "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete, 2 lease(s) to give back." in plan, plan
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-intents"})
    assert killed.code == -signal.SIGKILL, killed
    assert "container.db3 (ipv4[0])" in leases(project, "office:10.20.1.0/24")
    assert listed in ok(project, "plan", "--out", "release.plan")
    assert "Apply complete: 2 leases given back" in ok(project, "apply", "release.plan")
    assert leases(project, "office:10.20.1.0/24") == {"container.db (ipv4[0])": "10.20.1.2"}
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_a_moved_resource_never_made_leases_its_own_value(project: ProjectDir) -> None:
    """moved() of a resource only planned (no record to move): the new address leases a value of its own, and the
    old address's planned lease is given back, so the host is never made with a value no lease holds."""
    project.write_stack(POOLS + LAN + DB.format(name="db"))
    ok(project, "plan")
    assert leases(project, "office:10.20.1.0/24") == {"container.db (ipv4[0])": "10.20.1.2"}
    project.write_stack(POOLS + LAN + DB.format(name="database") + 'moved("container.db", "container.database")\n')
    assert "10.20.1.2 of pool office:10.20.1.0/24, leased to container.db (ipv4[0]): planned for a resource" \
        in ok(project, "apply", "--auto-approve")
    assert leases(project, "office:10.20.1.0/24") == {"container.database (ipv4[0])": "10.20.1.3"}
    assert nic_addresses(project, "container.database") == ["10.20.1.3"]


def test_a_claim_clash_is_found_on_a_first_plan_that_runs_the_stack_once(project: ProjectDir) -> None:
    """What a run with stand-ins leaves unchecked (two resources claiming one name or address) is checked with the
    values leased, at the line of the second, and nothing is touched."""
    project.write_stack(POOLS + DMZ + DB.format(name="db").replace("lan", "dmz")
                        + 'Container("db2", hypervisor_name="db", networks=[dmz], ipv4=[dmz.lease()], '
                          'init=["/bin/sh"], memory_mib=64)\n')
    assert_clean_error(project.crane("plan"), "main.py:6: container.db2: hypervisor name 'db' is already used by "
                                              "container.db")
    assert not (project.root / ".crane" / "sandbox.xml").exists()
