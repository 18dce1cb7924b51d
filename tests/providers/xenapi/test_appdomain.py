"""The app domain (crane's PaaS unit) on a (simulated) XenServer pool, through crane's CLI: its hosts are VMs made
from a template (no image, no cloud-init seed), the storage server's data on a VDI of its own, and the
configuration runs planned and recorded as skipped, since crane does not reach the simulator's guests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ProjectDir, ok
from tests.providers.xenapi.conftest import PASSWORD_VAR, crane_networks, guests, write_project

SHOP = '''from crane_iac import AppDomain, Network, WebTier
lan = Network("shop-net", mode="isolated", ipv4="10.81.0.0/24")
AppDomain("shop", network=lan, hosts="vm", template="Debian Bookworm 12", web=WebTier(size=2, min=1, max=4))
'''
RUNS = ["lb", "storage", "web-1", "web-2"]


@pytest.fixture
def shop(project: ProjectDir, sim: Any, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, sim.password)
    write_project(project, sim, stack=SHOP)
    return project


def test_an_app_domain_plans_and_applies_on_a_pool_with_its_runs_skipped(shop: ProjectDir, sim: Any) -> None:
    plan = shop.crane("plan")
    assert plan.code == 0, plan
    for host in RUNS:
        assert f"+ appdomain.shop/vm.{host}" in plan.out, plan.out
        assert f"+ appdomain.shop/configuration.{host}" in plan.out, plan.out
    assert "+ appdomain.shop/volume.storage-data" in plan.out and "cloudinit" not in plan.out, plan.out
    runs = [line for line in plan.out.splitlines() if "configuration." in line]
    assert runs and all("skipped" in line for line in runs), plan.out  # the plan says the runs will be skipped

    ok(shop, "apply", "--auto-approve")
    made = guests(sim)
    assert sorted(made) == ["shop-lb", "shop-storage", "shop-web-1", "shop-web-2"]
    for vm in made.values():
        assert vm["other_config"]["crane/template"] == "Debian Bookworm 12" and vm["power_state"] == "Running"
    # each host's NIC on the domain's network, with the address the balancer's configuration names
    vifs = sim.backdoor.records("VIF")
    lb_vif = vifs[made["shop-lb"]["VIFs"][0]]
    assert lb_vif["other_config"]["crane/ipv4"] == "10.81.0.10"
    assert vifs[made["shop-web-2"]["VIFs"][0]]["other_config"]["crane/ipv4"] == "10.81.0.13"
    # the storage server's data on a VDI of its own, attached to it
    vdis, vbds = sim.backdoor.records("VDI"), sim.backdoor.records("VBD")
    data = [vdis[vbds[r]["VDI"]]["name_label"] for r in made["shop-storage"]["VBDs"]
            if "crane/disk" in vbds[r]["other_config"]]
    assert data == ["shop-storage-data"]
    for host in RUNS:
        record = json.loads(ok(shop, "state", "show", f"appdomain.shop/configuration.{host}"))
        assert record["outputs"]["ran"] is False and "skipped" in record["outputs"]["skipped"], record
    assert shop.crane("plan", "--detailed-exitcode").code == 0

    ok(shop, "destroy", "--auto-approve")
    assert guests(sim) == {} and crane_networks(sim) == []
    assert not [v for v in sim.backdoor.records("VDI").values() if "crane/stack" in v["other_config"]]


def test_an_app_domain_of_vms_needs_an_image_or_a_template(shop: ProjectDir) -> None:
    shop.write_stack(SHOP.replace('template="Debian Bookworm 12", ', ""))
    result = shop.crane("plan")
    assert result.code != 0 and "or template=<the hypervisor's template" in result.err, result
    assert "stacks/main.py:3" in result.err and "Traceback" not in result.err, result.err


POOLED = '''from crane_iac import AppDomain, IPv4Pool, Network, WebTier
office = IPv4Pool("office", cidr="10.20.0.0/16", subnet_prefixlen=24)
lan = Network("shop-net", mode="isolated", ipv4=office.subnet())
AppDomain("shop", network=lan, hosts="vm", template="Debian Bookworm 12", web=WebTier(size=1, min=1, max=4))
'''


def test_on_a_pools_network_the_template_vms_lease_the_addresses_their_runs_name(shop: ProjectDir, sim: Any) -> None:
    shop.write_stack(POOLED)
    ok(shop, "apply", "--auto-approve")
    made, vifs = guests(sim), sim.backdoor.records("VIF")
    for host in ("lb", "storage", "web-1"):
        leased = vifs[made[f"shop-{host}"]["VIFs"][0]]["other_config"]["crane/ipv4"]
        assert leased.startswith("10.20."), leased
        run = json.loads(ok(shop, "state", "show", f"appdomain.shop/configuration.{host}"))
        assert [h["address"] for h in run["properties"]["hosts"]] == [leased], run
    assert shop.crane("plan", "--detailed-exitcode").code == 0
    ok(shop, "destroy", "--auto-approve")
