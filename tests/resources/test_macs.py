"""crane's stable MACs are part of every recorded NIC: a change to their derivation would give every guest of every
existing stack new MACs (and new DHCP leases) at its next apply. These values were taken from the derivation as it
was before it moved out of resources/vm.py, and must never change."""

from __future__ import annotations

from crane_iac import VM, Container, Network
from crane_iac.resources.macs import nic_macs, stable_mac


def test_the_derivation_is_pinned() -> None:
    assert stable_mac("vm.web-1#0") == "52:54:00:bc:e8:21"
    assert nic_macs("vm", "web-1", 2)[0] == "52:54:00:bc:e8:21"
    assert len(set(nic_macs("container", "db", 3))) == 3


def test_vms_and_containers_take_theirs_from_kind_name_and_index() -> None:
    lan, wan = Network("lan", mode="isolated"), Network("wan", mode="isolated")
    vm = VM("web-1", vcpus=1, memory_mib=128, networks=[lan, wan])
    assert [nic["mac"] for nic in vm.properties()["nics"]] == nic_macs("vm", "web-1", 2)
    box = Container("db", vcpus=1, memory_mib=128, networks=[lan], ipv4=["10.0.0.2/24"], init=["/bin/sh"])
    assert [nic["mac"] for nic in box.properties()["nics"]] == [stable_mac("container.db#0")]
