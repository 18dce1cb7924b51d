"""Networks as libvirt networks, defined, started and autostarted, with crane's owner in their metadata."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.addresses import GuestAddresses
from crane_iac.providers.libvirt.host import NOT_FOUND, Host


def network_live(name: str, root: ET.Element) -> Live:
    """A network as its XML describes it, with its owner."""
    props, outputs = lx.parse_network(root)
    owner = lx.owner_of(root)
    return Live("network", name, props, outputs, owner.stack if owner else None, owner.address if owner else None)


def read_network(net: Any) -> Live:
    """A network as libvirt reports it now."""
    return network_live(net.name(), ET.fromstring(net.XMLDesc(0)))


class Networks:
    """The ``network`` kind; a network's DHCP range decides its guests' addresses, so changes reach ``addresses``."""

    def __init__(self, host: Host, addresses: GuestAddresses) -> None:
        self.host = host
        self.addresses = addresses
        self._starting = threading.Lock()

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        self.addresses.forget_network(physical)
        # libvirtd picks a free virbrN when the network starts; two starting at once can pick the same one
        with self._starting:
            net = self.host.conn.networkDefineXML(lx.render_network(physical, p, owner))
            try:
                net.create()
            except libvirt.libvirtError:
                # a network the host cannot start (an Open vSwitch bridge on a host without it) is not left
                # defined: the next plan would take the idle definition for a network crane made
                net.undefine()
                raise
            net.setAutostart(1)
        live = read_network(net)
        if "leases" in p:  # crane's own fact, which the XML does not keep (rules.UNREADABLE)
            live.properties["leases"] = p["leases"]
        return live

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        try:
            return read_network(self.host.conn.networkLookupByName(physical))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NOT_FOUND:
                return None
            raise

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        raise ProviderError(f"network {physical!r} cannot be changed in place")

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        self.addresses.forget_network(physical)
        net = self.host.conn.networkLookupByName(physical)
        if net.isActive():
            net.destroy()
        net.undefine()
