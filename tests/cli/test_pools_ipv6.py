"""IPv6 for the NICs of containers and VMs on a network whose IPv6 subnet comes from a pool, end to end on the
sandbox: each NIC leases its SLAAC address (the EUI-64 of its MAC in the /64) at plan time, the plan shows it, a
re-plan, a reordering and moved() keep it, the network announces the subnet for SLAAC (no DHCPv6 range), a named
container address is leased and checked, and a delete gives the lease back when it is applied."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from crane_iac.resources.macs import eui64_address
from tests.cli.test_pools import LAN, POOLS, leases
from tests.conftest import ProjectDir, assert_clean_error, ok

SIX = "six:fd00:20::/64"
CT = 'Container("{name}", networks=[lan], ipv4=[lan.lease()]{extra}, init=["/bin/sh"], memory_mib=64)\n'
VM_ = 'VM("{name}", vcpus=1, memory_mib=128, networks=[lan]{extra})\n'
HEAD = POOLS.replace("import IPv4Pool", "import VM, IPv4Pool") + LAN


def nics(project: ProjectDir, address: str) -> list[dict[str, object]]:
    nics: list[dict[str, object]] = json.loads(ok(project, "state", "show", address))["properties"]["nics"]
    return nics


def test_each_nic_leases_its_slaac_address_and_keeps_it(project: ProjectDir) -> None:
    project.write_stack(HEAD + CT.format(name="db", extra="") + VM_.format(name="web", extra=""))
    plan = ok(project, "plan")
    ok(project, "apply", "--auto-approve")
    db, web = nics(project, "container.db")[0], nics(project, "vm.web")[0]
    db_v6, web_v6 = (eui64_address("fd00:20::/64", str(nic["mac"])) for nic in (db, web))
    assert db["ipv6"] == db_v6 and db["ipv6_prefix"] == 64 and web["ipv6"] == web_v6
    assert f'"ipv6": "{db_v6}"' in plan and f'"ipv6": "{web_v6}"' in plan, plan  # shown before the apply
    assert leases(project, SIX) == {"container.db (ipv6[0])": db_v6, "vm.web (nic_ipv6[0])": web_v6}
    # the container's domain has it (read back from there: a re-plan has nothing to do)
    xml = project.sandbox().lookupByName("db").XMLDesc()
    assert f"<ip address='{db_v6}' family='ipv6' prefix='64'/>" in xml, xml
    assert project.crane("plan", "--detailed-exitcode").code == 0
    # the network announces its /64 for SLAAC: no DHCPv6 range, the IPv4 one as before
    net = project.sandbox().networkLookupByName("lan").XMLDesc()
    assert "<range start='fd00:20::" not in net and "<range start='10.20.1.128'" in net, net
    # reordered and moved: the same values, nothing to replace
    project.write_stack(HEAD + VM_.format(name="web", extra="") + CT.format(name="database", extra="")
                        + 'moved("container.db", "container.database")\n')
    plan = ok(project, "plan")
    assert "0 to create, 0 to update, 0 to replace, 0 to delete, 1 to move" in plan, plan
    ok(project, "apply", "--auto-approve")
    assert leases(project, SIX) == {"container.database (ipv6[0])": db_v6, "vm.web (nic_ipv6[0])": web_v6}
    assert project.crane("plan", "--detailed-exitcode").code == 0
    # planned, not applied: the lease stays; applied: it goes back
    project.write_stack(HEAD + CT.format(name="database", extra=""))
    ok(project, "plan")
    assert "vm.web (nic_ipv6[0])" in leases(project, SIX)
    ok(project, "apply", "--auto-approve")
    assert leases(project, SIX) == {"container.database (ipv6[0])": db_v6}


def test_a_containers_named_ipv6_is_leased_and_checked(project: ProjectDir) -> None:
    named = ', ipv6=["{ip}"]'
    project.write_stack(HEAD + CT.format(name="fixed", extra=named.format(ip="fd00:20::12"))
                        + CT.format(name="auto", extra=", ipv6=[None]"))
    ok(project, "apply", "--auto-approve")
    auto = eui64_address("fd00:20::/64", str(nics(project, "container.auto")[0]["mac"]))
    assert leases(project, SIX) == {"container.fixed (ipv6[0])": "fd00:20::12", "container.auto (ipv6[0])": auto}
    assert nics(project, "container.fixed")[0]["ipv6"] == "fd00:20::12"
    for ip, problem in [("fd00:20::150", "'fd00:20::150' is reserved in pool 'six:fd00:20::/64'"),
                        (auto, f"{auto!r} is leased from pool 'six:fd00:20::/64' already, to container.auto "
                               "(ipv6[0]) in stack main"),
                        ("fd00:21::5", "ipv6 'fd00:21::5' is outside network.lan's subnet fd00:20::/64"),
                        ("10.20.1.7", "ipv6 '10.20.1.7' is an IPv4 address: give an IPv6 one")]:
        project.write_stack(HEAD + CT.format(name="fixed", extra=named.format(ip="fd00:20::12"))
                            + CT.format(name="auto", extra="") + CT.format(name="other", extra=named.format(ip=ip)))
        assert_clean_error(project.crane("plan"), f"container.other: {problem}")
    assert "container.other (ipv6[0])" not in leases(project, SIX)  # nothing was leased for the refused plans


def test_a_vms_ipv6_is_its_slaac_address(project: ProjectDir) -> None:
    project.write_stack(HEAD + VM_.format(name="web", extra=', nic_ipv6=["fd00:20::7"]'))
    assert_clean_error(project.crane("plan"), "vm.web: nic_ipv6[0] 'fd00:20::7': the guest takes its address on "
                       "network.lan by SLAAC, fd00:20::5054:ff:fe")
    fixed = 'wan = Network("wan", mode="isolated", ipv6="fd00:99::/64")\n'
    project.write_stack(HEAD + fixed + 'VM("web", vcpus=1, memory_mib=128, networks=[wan], '
                        'nic_ipv6=["fd00:99::7"])\n')
    assert_clean_error(project.crane("plan"), "network.wan's ipv6 subnet does not come from an address pool")


def test_the_first_plan_takes_the_slaac_address_in_the_subnet_leased_at_last(project: ProjectDir) -> None:
    """On the first plan the network's subnet is a stand-in: the NIC's address is leased once the subnet is, with
    the same interface identifier in the subnet leased (not the stand-in's)."""
    project.write_config('default_stack = "main"\n[stacks.main]\nfile = "stacks/main.py"\n'
                         '[stacks.other]\nfile = "stacks/other.py"\n')
    project.write_stack(POOLS + 'Network("first", mode="isolated", ipv6=six.subnet())\n', name="other.py")
    ok(project, "apply", "--auto-approve", "--stack", "other")  # fd00:20::/64, which main's stand-in would be
    project.write_stack(POOLS + LAN + CT.format(name="db", extra=""))
    ok(project, "apply", "--auto-approve", "--stack", "main")
    lan = leases(project, "six")["network.lan (ipv6)"]
    nic = nics(project, "container.db")[0]
    assert lan == "fd00:20:0:1::/64" and nic["ipv6"] == eui64_address(lan, str(nic["mac"]))
    assert leases(project, "six:fd00:20:0:1::/64") == {"container.db (ipv6[0])": nic["ipv6"]}
    assert project.crane("plan", "--detailed-exitcode", "--stack", "main").code == 0


def test_a_pools_ipv6_subnet_must_be_a_64(project: ProjectDir) -> None:
    project.write_stack(POOLS.replace('prefix="fd00:20::/48")', 'prefix="fd00:20::/48", subnet_prefixlen=56)')
                        + LAN)
    assert_clean_error(project.crane("plan"), "network.lan: router advertisements for SLAAC need a /64 subnet, not "
                       "'fd00:20::/56': give the IPv6 pool subnet_prefixlen=64")


def test_a_vm_nic_without_an_ipv4_reservation_still_leases_its_ipv6(project: ProjectDir) -> None:
    project.write_stack(HEAD + VM_.format(name="web", extra=", nic_ipv4=[None]"))
    ok(project, "apply", "--auto-approve")
    nic = nics(project, "vm.web")[0]
    assert "ipv4" not in nic and nic["ipv6"] == eui64_address("fd00:20::/64", str(nic["mac"]))
    assert "office:10.20.1.0/24" not in ok(project, "ipam", "list")  # nothing leased from it
    assert leases(project, SIX) == {"vm.web (nic_ipv6[0])": nic["ipv6"]}


OUTPUTS = ('from crane_iac import export\n'
           'web = VM("web", vcpus=1, memory_mib=128, networks=[lan]{web})\n'
           'db = Container("db", networks=[lan], ipv4=[lan.lease()], init=["/bin/sh"], memory_mib=64)\n'
           'Container("app", networks=[lan], ipv4=[lan.lease()], init=["/bin/sh"], memory_mib={app},\n'
           '          init_env={{"WEB_V6": web.ipv6}})\n'
           'export("web-v6", web.ipv6)\n'
           'export("web-v6s", web.ipv6_addresses)\n'
           'export("db-v6", db.ipv6)\n'
           'export("db-v6s", db.ipv6_addresses)\n')


def test_outputs_expose_each_nics_ipv6_address(project: ProjectDir) -> None:
    """A VM's ``ipv6``/``ipv6_addresses`` outputs and a container's hold the addresses leased to their NICs: another
    container's environment takes the VM's, the stack exports both kinds', and a VM restarted keeps its (the plan
    shows the value, and what uses it is left alone)."""
    project.write_stack(HEAD + OUTPUTS.format(web="", app=64))
    plan = ok(project, "plan")
    ok(project, "apply", "--auto-approve")
    web_v6 = eui64_address("fd00:20::/64", str(nics(project, "vm.web")[0]["mac"]))
    db_v6 = eui64_address("fd00:20::/64", str(nics(project, "container.db")[0]["mac"]))
    # a container's ipv6 field holds its leased addresses already: the plan shows them, as it shows its ipv4
    assert f'db-v6 = ["{db_v6}"]' in plan and "web-v6 = (known after apply)" in plan, plan
    assert [json.loads(ok(project, "output", "--json", name)) for name in ("web-v6", "web-v6s", "db-v6", "db-v6s")] == \
        [web_v6, [web_v6], [db_v6], [db_v6]]
    for address, v6 in (("vm.web", web_v6), ("container.db", db_v6)):
        outputs = json.loads(ok(project, "state", "show", address))["outputs"]
        assert outputs["ipv6"] == v6 and outputs["ipv6_addresses"] == [v6], outputs
    env = {e.get("name"): e.text for e in ET.fromstring(project.sandbox().lookupByName("app").XMLDesc())
           .iterfind("os/initenv")}
    assert env == {"WEB_V6": web_v6}
    assert project.crane("plan", "--detailed-exitcode").code == 0  # read back alike
    # a restart of the VM keeps its IPv6 address: the plan shows it, and what uses it does not change with it
    project.write_stack(HEAD + OUTPUTS.format(web=", max_vcpus=2", app=64))
    plan = ok(project, "plan")
    assert "0 to create, 1 to update, 0 to replace, 0 to delete" in plan and "container.app" not in plan, plan
    assert "web-v6" not in plan, plan  # no output changes
    # restarted in one apply with the container, which takes the VM's address from the VM just restarted
    project.write_stack(HEAD + OUTPUTS.format(web=", max_vcpus=2", app=96))
    plan = ok(project, "plan")
    assert "0 to create, 2 to update" in plan and "init_env" not in plan, plan
    ok(project, "apply", "--auto-approve")
    env = {e.get("name"): e.text for e in ET.fromstring(project.sandbox().lookupByName("app").XMLDesc())
           .iterfind("os/initenv")}
    assert env == {"WEB_V6": web_v6}
    assert json.loads(ok(project, "output", "--json", "web-v6s")) == [web_v6]
    assert json.loads(ok(project, "state", "show", "vm.web"))["outputs"]["ipv6"] == web_v6
    assert project.crane("plan", "--detailed-exitcode").code == 0
