"""Guests' IPv4 addresses, one per NIC, from the DHCP leases of their networks (simulated by the sandbox's host),
and the wait for a just-started guest's: its new lease, not the last boot's, or `curl $(crane output ip)` races it."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.host import DhcpRange, Host


def nic_networks(props: dict[str, Any]) -> set[str]:
    """The networks a VM's NICs are on."""
    return {nic["network"] for nic in props["nics"] if nic.get("network")}


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

    def outputs(self, uuid: str | None, props: dict[str, Any], leases: dict[str, str],
                ranges: dict[str, DhcpRange]) -> dict[str, Any]:
        """A VM's outputs: its UUID and an address per NIC (None while it is stopped or has no lease)."""
        addresses = [self.host.address((nic.get("mac") or "").lower(), nic.get("network"), ranges, leases)
                     if props["running"] else None for nic in props["nics"]]
        return {"uuid": uuid, "ipv4": addresses[0] if addresses else None, "addresses": addresses}

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
