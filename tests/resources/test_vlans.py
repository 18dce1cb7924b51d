"""VLAN tags on networks: one tag (an access port) or a trunk of several, checked in the model (1 to 4094, a
trunk's tags once each), a tag shared by two networks on one bridge refused at plan time, and libvirt writing and
reading back both forms (on the sandbox; tests/providers/test_libvirt_schemas.py validates the XML, and
tests/real/test_vlans.py has a real libvirtd define it)."""

from __future__ import annotations

from pathlib import Path

from crane_iac.loader import load_stack
from crane_iac.providers.base import CreateRequest, Owner
from crane_iac.providers.libvirt import LibvirtProvider
from tests.resources.test_messages import diagnostics


def test_tags_are_1_to_4094_and_a_trunk_carries_each_once(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, '''Network("a", mode="openvswitch", bridge="br0", vlan=0)
Network("b", mode="openvswitch", bridge="br0", vlan=[10, 4095])
Network("c", mode="openvswitch", bridge="br0", vlan=[])
Network("d", mode="openvswitch", bridge="br0", vlan=[10, 20, 10])
Network("e", mode="openvswitch", bridge="br0", vlan="10")
''') == [
        "2: network.a: vlan: a VLAN tag is 1 to 4094 (0 means untagged, 4095 is reserved), got 0",
        "3: network.b: vlan: a VLAN tag is 1 to 4094 (0 means untagged, 4095 is reserved), got 4095",
        "4: network.c: vlan: a trunk needs at least one tag: vlan=[100, 200], or vlan=None for no tag",
        "5: network.d: vlan: a trunk carries each tag once: [10, 20, 10]",
        "6: network.e: vlan: expected an int or a list, got str '10'",
    ]


def test_one_tag_on_one_bridge_belongs_to_one_network(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, '''Network("web", mode="openvswitch", bridge="br0", vlan=100)
Network("db", mode="openvswitch", bridge="br0", vlan=100)
''') == ["3: network.db: VLAN '100 on bridge br0' is already used by network.web"]
    # another bridge, another tag, or a trunk that carries the tag: all fine
    path = tmp_path / "ok.py"
    path.write_text('''from crane_iac import Network
Network("web", mode="openvswitch", bridge="br0", vlan=100)
Network("db", mode="openvswitch", bridge="br1", vlan=100)
Network("app", mode="openvswitch", bridge="br0", vlan=200)
Network("uplink", mode="openvswitch", bridge="br0", vlan=[200, 100])
''')
    loaded = {d.address: d.properties for d in load_stack(path).desired}
    assert loaded["network.uplink"]["vlan"] == [100, 200]  # a trunk's tags in order, so a reordering is no change
    assert loaded["network.web"]["vlan"] == 100


def test_the_sandbox_writes_and_reads_back_an_access_tag_and_a_trunk(tmp_path: Path) -> None:
    provider = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    try:
        base = {"mode": "openvswitch", "bridge": "ovsbr0", "ipv4": None, "ipv6": None, "dhcp": True}
        for name, vlan in (("access", 42), ("trunk", [100, 200])):
            request = CreateRequest("network", name, {**base, "vlan": vlan}, Owner("s", f"network.{name}"))
            made = provider.create(request)
            assert made.properties["vlan"] == vlan
            assert provider.diff("network", made.properties, {**base, "vlan": vlan}) == []
    finally:
        provider.close()
