"""VLAN networks against the real libvirtd. This machine's kernel has no 802.1Q, no VLAN-filtering bridges and no
Open vSwitch, so no tagged frame can pass here; what is shown is everything short of that: the real daemon defines
and starts the networks crane writes (an access tag and a trunk on an Open vSwitch bridge: libvirt looks for the
bridge only when a guest's port attaches), crane reads them back as declared, and a network the host refuses to
start is reported with libvirt's reason and not left defined."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from crane_iac.objects import Owner
from crane_iac.providers.libvirt.xml import parse_network, render_network
from tests.conftest import ProjectDir, assert_clean_error
from tests.real.host import REAL_URI

BASE = {"mode": "openvswitch", "bridge": "crvbr0", "ipv4": None, "ipv6": None, "dhcp": True}


def test_the_real_daemon_defines_tagged_networks_and_crane_reads_them_back(libvirtd: None) -> None:
    conn = libvirt.open(REAL_URI)
    try:
        for name, vlan in (("crv-access", 42), ("crv-trunk", [100, 200, 4094])):
            props = {**BASE, "vlan": vlan}
            net = conn.networkDefineXML(render_network(name, props, Owner("vlans", f"network.{name}")))
            try:
                read, _ = parse_network(ET.fromstring(net.XMLDesc(0)))
                assert read == props
            finally:
                net.undefine()
        assert not {"crv-access", "crv-trunk"} & {n.name() for n in conn.listAllNetworks(0)}
    finally:
        conn.close()


def test_a_tagged_network_is_applied_read_back_unchanged_and_destroyed(libvirtd: None, tmp_path: Path) -> None:
    """libvirt starts an Open vSwitch network without looking for the bridge (a guest's port would fail to attach
    here, with no Open vSwitch): the network is made, read back with its tag and trunk as declared, and removed."""
    project = ProjectDir(tmp_path)
    project.write_config(f'[stacks.main]\nfile = "stacks/main.py"\nuri = "{REAL_URI}"\n')
    project.write_stack(textwrap.dedent("""
        from crane_iac import Network
        Network("crv-web", mode="openvswitch", bridge="crvbr0", vlan=100)
        Network("crv-up", mode="openvswitch", bridge="crvbr0", vlan=[200, 100])
    """))
    try:
        assert project.crane("apply", "--auto-approve").code == 0
        conn = libvirt.open(REAL_URI)
        try:
            xml = conn.networkLookupByName("crv-up").XMLDesc(0)
        finally:
            conn.close()
        assert "<vlan trunk='yes'>" in xml and "<tag id='200'/>" in xml
        assert project.crane("plan", "--detailed-exitcode").code == 0
    finally:
        assert project.crane("destroy", "--auto-approve").code == 0


def test_a_network_the_host_cannot_start_is_not_left_defined(libvirtd: None, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    project.write_config(f'[stacks.main]\nfile = "stacks/main.py"\nuri = "{REAL_URI}"\n')
    project.write_stack(textwrap.dedent("""
        from crane_iac import Network
        Network("crv-lo", mode="nat", ipv4="10.239.0.0/24", bridge="lo")
    """))
    result = project.crane("apply", "--auto-approve")  # libvirtd makes the bridge at start, and lo exists
    conn = libvirt.open(REAL_URI)
    try:
        assert "crv-lo" not in [n.name() for n in conn.listAllNetworks(0)]
    finally:
        conn.close()
    assert_clean_error(result, "network.crv-lo", "libvirt refused to create network 'crv-lo'")
    assert "crv-lo" not in project.crane("state", "list").out
