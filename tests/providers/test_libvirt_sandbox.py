"""The libvirt provider on the embedded sandbox (libvirt's test driver, persisted to a node file)."""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

from crane_iac.errors import ProviderError
from crane_iac.providers.base import CreateRequest, DeleteRequest, Owner, UpdateRequest
from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.providers.libvirt.xml import render_network

VM_PROPS: dict[str, Any] = {"vcpus": 1, "max_vcpus": 4, "memory_mib": 256, "max_memory_mib": 1024, "nics": [],
                            "disks": [], "running": True, "autostart": False, "description": None}


def open_sandbox(path: Path, mutating: bool = True) -> LibvirtProvider:
    return LibvirtProvider(None, sandbox_dir=path, mutating=mutating)


def test_sandbox_persists_domains_run_state_and_autostart(tmp_path: Path) -> None:
    p = open_sandbox(tmp_path)
    p.create(CreateRequest("network", "lan", {"mode": "nat", "bridge": None, "vlan": None, "ipv4": "10.1.0.0/24",
                                "ipv6": "fd00:1::/64", "dhcp": True}, Owner("s", "network.lan")))
    p.create(CreateRequest("volume", "root", {"capacity_gib": 3, "pool": "default", "format": "qcow2", "base": None},
             Owner("s", "volume.root")))
    p.create(CreateRequest("vm", "on", {**VM_PROPS, "autostart": True,
                                        "nics": [{"network": "lan", "mac": "52:54:00:00:00:01"}],
                                        "disks": ["default/root"]}, Owner("s", "vm.on")))
    p.create(CreateRequest("vm", "off", {**VM_PROPS, "running": False}, Owner("s", "vm.off")))
    p.close()
    again = open_sandbox(tmp_path, mutating=False)
    live = {(x.kind, x.physical): x for x in again.read_all()}
    again.close()
    on, off = live[("vm", "on")], live[("vm", "off")]
    assert on.properties["running"] and on.properties["autostart"]
    assert not off.properties["running"] and not off.properties["autostart"]
    assert on.properties["disks"] == ["default/root"]
    assert on.properties["nics"] == [{"network": "lan", "mac": "52:54:00:00:00:01"}]
    assert (on.owner_stack, on.owner_address) == ("s", "vm.on")
    assert live[("network", "lan")].properties["ipv6"] == "fd00:1::/64"
    assert live[("volume", "root")].properties == {"capacity_gib": 3, "pool": "default", "format": "qcow2",
                                                   "base": None}
    # the node file is an ordinary test-driver file any libvirt client can open
    conn = libvirt.open(f"test://{tmp_path / 'sandbox.xml'}")
    dom = conn.lookupByName("on")
    root = ET.fromstring(dom.XMLDesc(0))
    assert root.find("devices/memballoon/stats").get("period") == "2"  # type: ignore[union-attr]
    conn.close()


def test_update_in_place_and_delete(tmp_path: Path) -> None:
    p = open_sandbox(tmp_path)
    p.create(CreateRequest("vm", "a", VM_PROPS, Owner("s", "vm.a")))
    after = {**VM_PROPS, "memory_mib": 768, "vcpus": 3, "description": "web", "running": False}
    live = p.update(UpdateRequest("vm", "a", VM_PROPS, after))
    assert {k: live.properties[k] for k in after} == after
    p.delete(DeleteRequest("vm", "a", after))
    p.delete(DeleteRequest("vm", "a", after))  # already gone is not an error
    assert [x.physical for x in p.read_all() if x.kind == "vm"] == []
    p.close()


def test_refused_call_names_the_object(tmp_path: Path) -> None:
    p = open_sandbox(tmp_path)
    with pytest.raises(ProviderError, match=r"refused to create volume 'v'.*nopool"):
        p.create(CreateRequest("volume", "v", {"capacity_gib": 1, "pool": "nopool", "format": "raw", "base": None},
                               Owner("s", "x")))
    p.close()


def test_unreachable_uri_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"cannot connect to test:///nonexistent/node\.xml"):
        LibvirtProvider("test:///nonexistent/node.xml", sandbox_dir=tmp_path, mutating=False)


@pytest.mark.parametrize(("props", "expected"), [
    ({"mode": "isolated", "ipv4": "10.2.0.0/24"}, ["<ip address='10.2.0.1' prefix='24'>"]),
    ({"mode": "route", "ipv6": "fd00:2::/64"}, ["<forward mode='route'/>", "family='ipv6'", "end='fd00:2::1ff'"]),
    ({"mode": "bridge", "bridge": "br0"}, ["<forward mode='bridge'/>", "<bridge name='br0'/>"]),
    ({"mode": "openvswitch", "bridge": "ovsbr0", "vlan": 42},
     ["<virtualport type='openvswitch'/>", "<tag id='42'/>"]),
])
def test_network_modes_render(props: dict[str, Any], expected: list[str]) -> None:
    full = {"mode": "nat", "bridge": None, "vlan": None, "ipv4": None, "ipv6": None, "dhcp": True, **props}
    xml = render_network("n", full, Owner("s", "network.n"))
    for needle in expected:
        assert needle in xml
    ET.fromstring(xml)


def test_a_new_sandbox_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The empty node a new sandbox starts from is read at connect and removed at once: a run killed later (SIGKILL
    skips every cleanup) leaves nothing in the temporary directory."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    p = LibvirtProvider(None, sandbox_dir=tmp_path / "sandbox", mutating=True)
    try:
        assert list(scratch.iterdir()) == []
        assert [live.physical for live in p.read_all() if live.kind == "pool"] == ["default"]  # read from it
    finally:
        p.close()
