"""Leased addresses on the real libvirtd: two QEMU guests on a network whose subnet comes from an address pool boot
with the addresses crane leased them (a DHCP reservation added to the running network for each NIC's MAC, one
named in the stack, one leased), answer on them, keep them across a re-plan, and the reservation goes with the
guest it belonged to while the other keeps its address."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, ok
from tests.real.host import REAL_ENDPOINT, RealHost, http_get

PREFIX = "crp-"

STACK = """
from crane_iac import VM, IPv4Pool, Network, export

pool = IPv4Pool("crp-pool", cidr="10.236.0.0/16", subnet_prefixlen=24)
lan = Network("crp-lan", mode="nat", ipv4=pool.subnet())
for name, named in {guests}:
    guest = VM(name, vcpus=1, memory_mib=128, networks=[lan], kernel="{kernel}", initrd="{initrd}",
               cmdline="console=ttyS0", **({{"nic_ipv4": [named]}} if named else {{}}))
    export(name, guest.ipv4)
"""


@pytest.fixture
def pooled(real_host: RealHost, tmp_path: Path) -> Iterator[ProjectDir]:
    real_host.sweep(PREFIX)
    project = ProjectDir(tmp_path)
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n' + REAL_ENDPOINT)
    yield project
    project.crane("destroy", "--auto-approve")
    real_host.sweep(PREFIX)


def write(project: ProjectDir, host: RealHost, guests: list[tuple[str, str | None]]) -> None:
    project.write_stack(textwrap.dedent(STACK).format(guests=guests, kernel=host.kernel, initrd=host.initrd))


def test_guests_boot_with_the_addresses_crane_leased_them(pooled: ProjectDir, real_host: RealHost) -> None:
    write(pooled, real_host, [("crp-a", None), ("crp-b", "10.236.0.40")])
    ok(pooled, "apply", "--auto-approve")
    assert ok(pooled, "output", "crp-a").strip() == "10.236.0.2"  # the lowest the network's pool leases
    assert ok(pooled, "output", "crp-b").strip() == "10.236.0.40"  # the one named, reserved for its MAC
    for address in ("10.236.0.2", "10.236.0.40"):
        assert http_get(address, timeout=60).strip() == "crane test guest"
    xml = real_host.conn.networkLookupByName("crp-lan").XMLDesc(0)
    assert "ip='10.236.0.2'" in xml and "ip='10.236.0.40'" in xml and "<range start='10.236.0.128'" in xml
    assert pooled.crane("plan", "--detailed-exitcode").code == 0
    write(pooled, real_host, [("crp-b", "10.236.0.40")])  # crp-a goes; its reservation and lease with it
    ok(pooled, "apply", "--auto-approve")
    xml = real_host.conn.networkLookupByName("crp-lan").XMLDesc(0)
    assert "ip='10.236.0.2'" not in xml and "ip='10.236.0.40'" in xml
    assert http_get("10.236.0.40", timeout=60).strip() == "crane test guest"
    assert "10.236.0.2 " not in ok(pooled, "ipam", "show", "crp-pool:10.236.0.0/24")
