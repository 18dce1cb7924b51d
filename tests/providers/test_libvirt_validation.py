"""libvirt's limits and conventions are the libvirt provider's rules (validate_resource), not the models': a stack
loads with what another provider could take, and an endpoint of type libvirt refuses it with file:line and address."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crane_iac.loader import load_stack
from crane_iac.providers.libvirt.validation import validate_resource
from crane_iac.providers.registry import resource_rules
from tests.conftest import ProjectDir, assert_clean_error


@pytest.mark.parametrize(("kind", "properties", "problem"), [
    ("vm", {"vcpus": 256, "max_vcpus": 256}, "vcpus: must be at most 255, got 256"),
    ("vm", {"vcpus": 2, "max_vcpus": 300}, "max_vcpus: must be at most 255, got 300"),
    ("container", {"vcpus": 1, "init_env": {"A": "x&y", "B": "fine"}}, "init_env A: libvirt 9.0 writes"),
    ("network", {"mode": "nat", "ipv4": None, "ipv6": "fd00::/64", "dhcp": True}, "mode='nat' needs an ipv4"),
    ("network", {"mode": "isolated", "ipv4": None, "ipv6": "fd00::/48", "dhcp": True}, "DHCPv6 needs a /64"),
    ("pool", {"type": "logical", "path": "/srv/x"}, "not 'logical'"),
    ("network", {"mode": "isolated", "ipv4": "10.2.0.0/24", "vlan": 7},
     "a VLAN tag needs mode='openvswitch'; libvirt cannot tag an 'isolated' network"),
    ("network", {"mode": "nat", "ipv4": "10.3.0.0/24", "vlan": 7}, "libvirt cannot tag a 'nat' network"),
])
def test_libvirt_refuses_what_it_cannot_make(kind: str, properties: dict[str, object], problem: str) -> None:
    (found,) = validate_resource(kind, properties)
    assert problem in found


def test_what_libvirt_takes_passes_and_the_registry_finds_the_rules() -> None:
    assert validate_resource("vm", {"vcpus": 255, "max_vcpus": 255}) == []
    assert validate_resource("network", {"mode": "nat", "ipv4": "10.0.0.0/24", "ipv6": "fd00::/48",
                                         "dhcp": False}) == []
    assert validate_resource("volume", {"capacity_gib": 1}) == []  # a kind with no rule of libvirt's
    assert resource_rules("libvirt") is validate_resource
    assert resource_rules("no-such-type") is None


def test_the_models_are_provider_neutral(tmp_path: Path) -> None:
    """The stack alone loads: a VM of 300 vCPUs and a nat network with IPv6 only are libvirt's to refuse."""
    stack = tmp_path / "stack.py"
    stack.write_text(textwrap.dedent("""
        from crane_iac import VM, Network, StoragePool
        Network("v6", mode="nat", ipv6="fd00:1::/64")
        Network("tagged", mode="isolated", ipv4="10.2.0.0/24", vlan=7)
        VM("big", vcpus=300, memory_mib=512)
        StoragePool("lv", path="/srv/lv", type="logical")
    """))
    loaded = load_stack(stack)
    assert {d.address for d in loaded.desired} == {"network.v6", "network.tagged", "vm.big", "pool.lv"}


def test_a_libvirt_endpoint_reports_every_problem_with_its_place(project: ProjectDir) -> None:
    project.write_stack("""
        from crane_iac import VM, Network
        Network("v6", mode="nat", ipv6="fd00:1::/64")
        VM("big", vcpus=300, memory_mib=512)
    """)
    result = project.crane("validate")
    assert_clean_error(result, "main.py:3: network.v6: mode='nat' needs an ipv4 subnet",
                       "main.py:4: vm.big: vcpus: must be at most 255, got 300", "2 error(s)")
