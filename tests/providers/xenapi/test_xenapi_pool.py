"""What a pool has beyond VMs on an internal network: a VLAN network on a PIF (and a PIF the pool lacks, found
by the plan), the autoscaler's memory reading, and a heterogeneous pool's CPUs, which the plan remarks on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crane_iac.providers.xenapi.cpu import common_mask
from tests.conftest import ProjectDir, ok
from tests.providers.xenapi.conftest import PASSWORD_VAR, crane_networks, guests, write_project

VLAN_STACK = '''from crane_iac import VM, Network, variable
tagged = Network("tagged", mode="bridge", bridge=variable("pif"), vlan=100)
VM("web-1", vcpus=1, memory_mib=256, networks=[tagged])
'''


def _vlan_pifs(sim: Any) -> list[tuple[str, int]]:
    return sorted((pif["device"], pif["VLAN"]) for pif in sim.backdoor.records("PIF").values() if pif["VLAN"] >= 0)


def test_a_vlan_network_on_a_pif(xen: ProjectDir, sim: Any) -> None:
    write_project(xen, sim, stack=VLAN_STACK.replace('variable("pif")', '"eth0"'))
    ok(xen, "apply", "--auto-approve", "--var", "web=0")
    assert crane_networks(sim) == ["tagged"] and _vlan_pifs(sim) == [("eth0", 100)]
    assert guests(sim)["web-1"]["power_state"] == "Running"
    assert xen.crane("plan", "--detailed-exitcode").code == 0
    ok(xen, "destroy", "--auto-approve")
    assert crane_networks(sim) == [] and _vlan_pifs(sim) == []


def test_a_pif_the_pool_lacks_is_found_by_the_plan(xen: ProjectDir, sim: Any) -> None:
    write_project(xen, sim, stack=VLAN_STACK.replace('variable("pif")', '"eth9"'))
    plan = xen.crane("plan")
    assert plan.code == 1 and "no physical interface 'eth9' to put VLAN 100 on; its PIFs: eth0" in plan.err, plan
    assert crane_networks(sim) == []


def test_the_memory_reading_for_the_autoscaler(xen: ProjectDir, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from crane_iac.providers.xenapi.endpoint import open_endpoint

    ok(xen, "apply", "--auto-approve", "--var", "web=1")
    sim.backdoor.set_guest_free("web-1", 100)
    provider = open_endpoint({"uri": sim.url, "username": sim.username, "password_env": PASSWORD_VAR},
                             sandbox_dir=Path(xen.root / ".crane"), mutating=False)
    try:
        usage = provider.memory_usage("vm", "web-1")
        assert usage is not None and usage.total_mib == 256 and usage.unused_mib == 100 and usage.used_mib == 156
        sim.backdoor.halt_vm("web-1")
        assert provider.memory_usage("vm", "web-1") is None
        assert provider.memory_usage("vm", "nowhere") is None
    finally:
        provider.close()


def test_a_heterogeneous_pool_s_plan_names_the_hosts_that_need_the_mask(project: ProjectDir,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.xensim import HostSpec, PoolSpec, Simulator

    older = "17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000-0c000000"
    newer = "17cbfbff-f7fa3223-2d93fbff-00000123-00000001-000007ab-000000ff-00000000-00001000-0c000000"
    with Simulator(PoolSpec(hosts=[HostSpec("old-1", cpu_features=older), HostSpec("new-1", cpu_features=newer)])
                   ) as sim:
        monkeypatch.setenv(PASSWORD_VAR, sim.password)
        write_project(project, sim)
        plan = project.crane("plan")
        assert plan.code == 0, plan
        assert "the pool's CPUs differ: a VM started on new-1 could not resume on the other hosts" in plan.out, plan
        assert older in plan.out  # the common mask is the older host's features
        mask = common_mask(sim.backdoor.records("host"))
        assert mask is not None and mask.mask == older and mask.needing == ("new-1",)
