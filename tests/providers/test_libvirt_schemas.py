"""crane's libvirt XML validates against libvirt's own RelaxNG schemas (virt-xml-validate, from libvirt-clients):
every network mode, VLAN access tags and trunks, and domains of both kinds. This machine's kernel has no 802.1Q and
no Open vSwitch, so tagged traffic cannot run here; what can be shown is that libvirt takes what crane writes
(here by its schema, and in tests/real/test_vlans.py by a real libvirtd defining it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crane_iac import VM, CloudInit, Container, Network, Volume
from crane_iac.objects import Owner
from crane_iac.providers.libvirt.xml import render_container, render_domain, render_network

NETWORK: dict[str, Any] = {"mode": "nat", "bridge": None, "vlan": None, "ipv4": None, "ipv6": None, "dhcp": True}


def validate(tmp_path: Path, xml: str, schema: str) -> None:
    tool = shutil.which("virt-xml-validate")
    assert tool, "virt-xml-validate is missing: scripts/install.sh installs libvirt-clients and libxml2-utils"
    path = tmp_path / f"{schema}.xml"
    path.write_text(xml)
    result = subprocess.run([tool, str(path), schema], capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{xml}"


@pytest.mark.parametrize("props", [
    {"mode": "nat", "ipv4": "10.2.0.0/24", "ipv6": "fd00:2::/64"},
    {"mode": "isolated", "ipv4": "10.3.0.0/24", "dhcp": False},
    {"mode": "route", "ipv6": "fd00:4::/64"},
    {"mode": "open", "ipv4": "10.5.0.0/24"},
    {"mode": "bridge", "bridge": "br0"},
    {"mode": "openvswitch", "bridge": "ovsbr0"},
    {"mode": "openvswitch", "bridge": "ovsbr0", "vlan": 42},
    {"mode": "openvswitch", "bridge": "ovsbr0", "vlan": [100, 200, 4094]},
], ids=lambda p: "-".join(str(v) for v in p.values()))
def test_every_network_crane_writes_validates(tmp_path: Path, props: dict[str, Any]) -> None:
    validate(tmp_path, render_network("n", {**NETWORK, **props}, Owner("s", "network.n")), "network")


def test_a_trunk_is_written_as_one_and_an_access_tag_is_not(tmp_path: Path) -> None:
    trunk = render_network("t", {**NETWORK, "mode": "openvswitch", "bridge": "b", "vlan": [7, 9]}, Owner("s", "n"))
    access = render_network("a", {**NETWORK, "mode": "openvswitch", "bridge": "b", "vlan": 7}, Owner("s", "n"))
    assert "<vlan trunk='yes'>" in trunk and "<tag id='7'/>" in trunk and "<tag id='9'/>" in trunk
    assert "<vlan>" in access and "trunk" not in access


def test_domains_crane_writes_validate(tmp_path: Path) -> None:
    lan = Network("lan", mode="isolated", ipv4="10.0.0.0/24")
    seed = CloudInit("web-seed", user_data="#cloud-config\n")
    vm = VM("web", vcpus=2, max_vcpus=4, memory_mib=256, max_memory_mib=512, networks=[lan], description="web",
            kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=ttyS0", cloud_init=seed)
    disks = [{"format": "qcow2", "pool": "default", "volume": "web-root", "target": "vda"}]
    validate(tmp_path, render_domain("web", vm.properties(), Owner("s", "vm.web"), domain_type="kvm", disks=disks,
                                     stats_period=2), "domain")
    data = Volume("data", capacity_gib=None, format="dir")
    box = Container("db", memory_mib=64, vcpus=2, networks=[lan], ipv4=["10.0.0.5"], init=["/sbin/init", "-v"],
                    init_env={"A": "1"}, mounts={"/srv": data})
    xml = render_container("db", box.properties(), Owner("s", "container.db"), domain_type="lxc",
                           mount_dirs={"/srv": "/var/lib/crane/data"})
    validate(tmp_path, xml, "domain")
    # its vcpus enforced: a quota of two periods per period, over the whole container
    assert "<cputune>\n    <period>100000</period>\n    <quota>200000</quota>\n  </cputune>" in xml
