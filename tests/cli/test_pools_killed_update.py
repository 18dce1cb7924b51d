"""An apply SIGKILLed after its provider call and before its commit (``after-checkpoint``): the object is as the
stack has it, its record is not. The next apply records what it reads (a state-only update, the outputs with it),
so the drift does not show at every plan after, and the address the container took from a pool by SLAAC, leased
as ``planned`` by the killed apply, is bound to it. (Found by tests/cli/test_pools_property.py: a network's IPv6
subnet named, then taken from a pool again, with the apply that gives the container its SLAAC address killed.)"""

from __future__ import annotations

import json
import signal

from tests.conftest import ProjectDir, ok

HEAD = '''from crane_iac import IPv4Pool, IPv6Pool, Network, Container
office = IPv4Pool("office", cidr="10.20.0.0/16", subnet_prefixlen=24)
six = IPv6Pool("six", prefix="fd00:20::/48")
'''
HOST = 'Container("db", networks=[lan], ipv4=[lan.lease()], init=["/bin/sh"], memory_mib=64)\n'


def lan(ipv6: str) -> str:
    return f'lan = Network("lan", mode="isolated", ipv4=office.subnet(), ipv6={ipv6})\n'


def test_a_killed_update_is_recorded_by_the_next_apply_and_its_slaac_lease_bound(project: ProjectDir) -> None:
    project.write_stack(HEAD + lan("six.subnet()") + HOST)
    ok(project, "apply", "--auto-approve")
    subnet = json.loads(ok(project, "state", "show", "network.lan"))["properties"]["ipv6"]
    project.write_stack(HEAD + lan(f'"{subnet}"') + HOST)  # named: the container leases no SLAAC address
    ok(project, "apply", "--auto-approve")
    assert "ipv6" not in json.loads(ok(project, "state", "show", "container.db"))["properties"]["nics"][0]
    project.write_stack(HEAD + lan("six.subnet()") + HOST)  # from the pool again: the NIC gets its SLAAC address
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-checkpoint"})
    assert killed.code == -signal.SIGKILL, killed.out + killed.err

    plan = ok(project, "plan")
    assert "! container.db  nics:" in plan, plan  # the drift, and the record taking what was read
    assert '~ container.db  nics[0]["ipv6"]: null → fd00:20::' in plan, plan
    assert "recorded in state only; nothing on the hypervisor changes" in plan, plan
    ok(project, "apply", "--auto-approve")

    record = json.loads(ok(project, "state", "show", "container.db"))
    slaac = record["properties"]["nics"][0]["ipv6"]
    assert slaac.startswith("fd00:20::") and record["outputs"]["ipv6"] == slaac, record
    shown = json.loads(ok(project, "ipam", "show", f"six:{subnet}", "--json"))["leases"]
    assert [(x["resource"], x["value"], x["state"]) for x in shown] == [("container.db", slaac, "bound")], shown
    settled = project.crane("plan", "--detailed-exitcode")
    assert settled.code == 0 and "Drift" not in settled.out, settled.out + settled.err
