"""IPv6 on NICs, in the models and the libvirt XML: the SLAAC address of a MAC, a container's ipv6 entries checked
against its networks, rendered on its interface and read back from the domain XML, and the /64 a network
announces for SLAAC read from its XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pydantic import ValidationError

from crane_iac import VM, Container, Network
from crane_iac.objects import Owner
from crane_iac.providers.libvirt import xml as lx
from crane_iac.resources.macs import eui64_address


def test_the_slaac_address_is_the_macs_modified_eui64_in_the_subnets_first_64_bits() -> None:
    assert eui64_address("fd00:20::/64", "52:54:00:12:34:56") == "fd00:20::5054:ff:fe12:3456"
    assert eui64_address("2001:db8:1:2::/64", "00:16:3e:aa:bb:cc") == "2001:db8:1:2:216:3eff:feaa:bbcc"
    assert eui64_address("fd00:20::/56", "52:54:00:12:34:56") == "fd00:20::5054:ff:fe12:3456"


def container(ipv6: list[str | None], net: Network | None = None) -> Container:
    lan = net or Network("lan", mode="nat", ipv4="10.9.0.0/24", ipv6="fd00:9::/64")
    return Container("c", networks=[lan], ipv4=["10.9.0.5"], ipv6=ipv6, init=["/bin/sh"], memory_mib=64)


@pytest.mark.parametrize(("ipv6", "problem"), [
    (["10.9.0.6"], "ipv6 '10.9.0.6' is an IPv4 address: give an IPv6 one"),
    (["nonsense"], "ipv6 'nonsense' is not an IPv6 address"),
    (["fd00:8::5"], "ipv6 'fd00:8::5' is outside network.lan's subnet fd00:9::/64"),
    (["fd00:9::1"], "ipv6 'fd00:9::1' is the host's address on it"),
    (["fd00:9::5/48"], "network.lan is fd00:9::/64; drop the prefix or give /64"),
    (["fd00:9::5", None], "give one ipv6 entry per network"),
])
def test_a_containers_ipv6_is_checked_against_its_network(ipv6: list[str | None], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        container(ipv6)


def test_a_containers_ipv6_is_set_on_its_interface_and_read_back() -> None:
    props = container(["fd00:9::5"]).properties()
    nic = props["nics"][0]
    assert (nic["ipv6"], nic["ipv6_prefix"], nic["ipv6_gateway"]) == ("fd00:9::5", 64, "fd00:9::1")
    xml = lx.render_container("c", props, Owner("main", "container.c"), domain_type="lxc", mount_dirs={})
    assert "<ip address='fd00:9::5' family='ipv6' prefix='64'/>" in xml
    assert "<route family='ipv6' address='::' prefix='0' gateway='fd00:9::1'/>" in xml
    parsed = lx.parse_container(ET.fromstring(xml), running=True, autostart=False, volume_by_path={})
    assert parsed["nics"] == props["nics"]
    # a NIC without one has none of the keys, as a domain without an IPv6 <ip> reads back
    props = container([]).properties()
    xml = lx.render_container("c", props, Owner("main", "container.c"), domain_type="lxc", mount_dirs={})
    assert "ipv6" not in xml
    assert lx.parse_container(ET.fromstring(xml), running=True, autostart=False,
                              volume_by_path={})["nics"] == props["nics"] and "ipv6" not in props["nics"][0]


def test_a_network_without_dhcpv6_announces_its_64_for_slaac_and_a_vm_shows_its_address() -> None:
    slaac = Network("six", mode="isolated", ipv6="fd00:7::/64", dhcp=False)
    served = Network("served", mode="isolated", ipv6="fd00:8::/64")
    vm = VM("v", vcpus=1, memory_mib=64, networks=[slaac, served])
    nics = vm.properties()["nics"]
    assert nics[0]["ipv6"] == eui64_address("fd00:7::/64", vm.macs[0]) and "ipv6" not in nics[1]
    for net, subnet in ((slaac, "fd00:7::/64"), (served, None)):
        root = ET.fromstring(lx.render_network(net.physical_name, net.properties(), Owner("main", net.address)))
        assert lx.slaac_subnet(root) == subnet
    with pytest.raises(ValidationError, match="does not come from an address pool"):
        VM("w", vcpus=1, memory_mib=64, networks=[slaac], nic_ipv6=["fd00:7::5"])
