"""Guests' IPv4 addresses, one per NIC, from the DHCP leases of their networks (simulated by the sandbox's host;
their IPv6 ones are their properties'), and the wait for a just-started guest's: its new lease, not the last boot's,
or `curl $(crane output ip)` races it. The address outputs of VMs and containers alike (``nic_outputs``)."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.host import DhcpRange, Host
from crane_iac.resources.macs import eui64_address


def nic_networks(props: dict[str, Any]) -> set[str]:
    """The networks a VM's NICs are on."""
    return {nic["network"] for nic in props["nics"] if nic.get("network")}


def nic_outputs(ipv4: list[str | None], nics: list[dict[str, Any]]) -> dict[str, Any]:
    """The address outputs of a VM or container, one design for both kinds: ``ipv4`` and ``ipv6`` are the first
    NIC's address of each family, ``addresses`` (IPv4, the name it had before IPv6) and ``ipv6_addresses`` one per
    NIC in NIC order, None where a NIC has none. A NIC's IPv6 address is its properties' (``nics[i].ipv6``): the
    one crane leased it and set (a container) or the one its MAC gives it by SLAAC (a VM), whether it runs or not."""
    ipv6 = [nic.get("ipv6") for nic in nics]
    return {"ipv4": ipv4[0] if ipv4 else None, "addresses": ipv4,
            "ipv6": ipv6[0] if ipv6 else None, "ipv6_addresses": ipv6}


class NicFacts:
    """What a VM's networks know of its NICs and its domain XML does not: the IPv4 address each network's DHCP
    server reserves for a MAC, and the /64 each announces for SLAAC, from which a NIC's IPv6 address follows
    (resources/vm.py). The bulk read learns every network; a read of one guest only its networks'."""

    def __init__(self) -> None:
        self.reserved: dict[tuple[str, str], str] = {}  # (network, MAC) → the address reserved for it
        self.slaac: dict[str, str] = {}  # network → the /64 it announces for SLAAC

    def learn(self, name: str, root: ET.Element) -> None:
        """Note what network ``name``'s XML says."""
        self.reserved.update(((name, mac), ip) for mac, ip in lx.reservations(root).items())
        subnet = lx.slaac_subnet(root)
        if subnet is not None:
            self.slaac[name] = subnet

    def fill(self, props: dict[str, Any]) -> None:
        """Put each NIC's reserved IPv4 address and SLAAC IPv6 address into a VM's properties as read."""
        for nic in props["nics"]:
            ip = self.reserved.get((nic["network"], nic["mac"]))
            if ip:
                nic["ipv4"] = ip
            subnet = self.slaac.get(nic["network"])
            if subnet and nic["mac"]:
                nic["ipv6"] = eui64_address(subnet, nic["mac"])


class GuestAddresses:
    """Addresses on one host, with the DHCP ranges read this run and the leases held when apply started a guest."""

    def __init__(self, host: Host, *, timeout: float) -> None:
        self.host = host
        #: how long a just-started guest's NICs may take to lease an address
        self.timeout = timeout
        self._ranges: dict[str, DhcpRange | None] = {}
        #: MAC → expiry of the lease it held when apply started its guest (an earlier boot's lease, not this one's)
        self._stale: dict[str, int] = {}
        self._lock = threading.Lock()

    def forget_network(self, name: str) -> None:
        """Drop a cached DHCP range: crane is changing that network."""
        self._ranges.pop(name, None)

    def ranges(self, networks: set[str]) -> dict[str, DhcpRange]:
        """DHCP ranges by network name; cached for the run (crane's own network changes clear the cache)."""
        ranges = {}
        for name in networks:
            if name not in self._ranges:
                try:
                    self._ranges[name] = lx.dhcp_range(
                        ET.fromstring(self.host.conn.networkLookupByName(name).XMLDesc(0)))
                except libvirt.libvirtError:
                    continue
            dhcp = self._ranges[name]
            if dhcp is not None:
                ranges[name] = dhcp
        return ranges

    def leases(self, ranges: dict[str, DhcpRange], networks: set[str] | None = None, *,
               fresh: bool = False) -> dict[str, str]:
        """MAC → IPv4 address leased on ``networks`` (all of ``ranges``); ``fresh``: only leases taken since apply
        started the guest."""
        names = ranges.keys() if networks is None else networks & ranges.keys()
        return {mac: ip for mac, (ip, expiry) in self.host.dhcp_leases(names).items()
                if not fresh or self._stale.get(mac) != expiry}

    def nic_facts(self, networks: set[str]) -> NicFacts:
        """What ``networks`` (read now) know of the NICs on them; a network not there is left out."""
        facts = NicFacts()
        for name in networks:
            try:
                facts.learn(name, ET.fromstring(self.host.conn.networkLookupByName(name).XMLDesc(0)))
            except libvirt.libvirtError:
                continue
        return facts

    def outputs(self, uuid: str | None, props: dict[str, Any], leases: dict[str, str],
                ranges: dict[str, DhcpRange]) -> dict[str, Any]:
        """A VM's outputs: its UUID, an IPv4 address per NIC (None while it is stopped or has no lease) and an IPv6
        one (its SLAAC address, stopped or not: the MAC and the network's /64 give it; ``nic_outputs``)."""
        addresses = [self.host.address((nic.get("mac") or "").lower(), nic.get("network"), ranges, leases)
                     if props["running"] else None for nic in props["nics"]]
        return {"uuid": uuid, **nic_outputs(addresses, props["nics"])}

    def before_start(self, props: dict[str, Any]) -> None:
        """Note the leases the guest's MACs hold now, before apply starts it: MACs are stable across restarts and
        replacements, so DHCP still holds the last boot's lease, and this boot's is the one whose expiry moved."""
        networks = nic_networks(props)
        held = self.host.dhcp_leases(self.ranges(networks).keys()) if networks else {}
        with self._lock:
            for nic in props["nics"]:
                mac = nic["mac"].lower()
                if mac in held:
                    self._stale[mac] = held[mac][1]
                else:
                    self._stale.pop(mac, None)

    def after_change(self, uuid: str | None, props: dict[str, Any], *, wait: bool) -> dict[str, Any]:
        """Outputs of a VM just created or changed; ``wait``: until every NIC on a DHCP network has an address
        (or ``timeout`` passes: the addresses missing then are null, and the next refresh finds them)."""
        networks = nic_networks(props)
        ranges = self.ranges(networks) if networks else {}
        leases = self.leases(ranges, fresh=wait)
        nics = [(nic["mac"].lower(), nic.get("network")) for nic in props["nics"] if nic.get("network") in ranges]

        def missing() -> bool:
            return any(self.host.address(mac, net, ranges, leases) is None for mac, net in nics)

        deadline = time.monotonic() + (self.timeout if wait else 0)
        while props["running"] and missing() and time.monotonic() < deadline:
            time.sleep(0.25)
            leases = self.leases(ranges, fresh=wait)
        if wait:
            with self._lock:
                for mac in {mac for mac, _ in nics} & leases.keys():
                    self._stale.pop(mac, None)
        return self.outputs(uuid, props, leases, ranges)
