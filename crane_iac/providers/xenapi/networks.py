"""Networks: an internal network (``mode="isolated"``: no PIF, the pool's hosts switch it among themselves), or a
VLAN network (``pool.create_VLAN_from_PIF`` on the PIF whose device ``bridge`` names, on every host of the pool).
crane's owner and the properties XenServer does not hold (subnets, DHCP wish, leases) are in the network's
other_config, written with the network in one call."""

from __future__ import annotations

import json
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.xenapi.reading import read_network
from crane_iac.providers.xenapi.records import NETWORK_KEY, owner_config
from crane_iac.providers.xenapi.session import Connection, XenApiError

#: the properties kept in other_config
RECORDED = ("mode", "ipv4", "ipv6", "dhcp", "leases")


def recorded(p: dict[str, Any]) -> str:
    return json.dumps({key: p[key] for key in RECORDED if key in p}, sort_keys=True)


class Networks:
    """The ``network`` kind."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def find(self, physical: str) -> str | None:
        found = self.conn.call("network.get_by_name_label", physical)
        return str(found[0]) if found else None

    def physical_pif(self, device: str) -> str | None:
        """The pool master's untagged PIF of ``device`` (a VLAN made on it reaches every host's PIF of that device)."""
        pool = self.conn.call("pool.get_all")[0]
        master = self.conn.call("pool.get_master", pool)
        for ref in self.conn.call("host.get_PIFs", master):
            pif = self.conn.call("PIF.get_record", ref)
            if pif["device"] == device and int(pif["VLAN"]) < 0:
                return str(ref)
        return None

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        other = {**owner_config(owner), NETWORK_KEY: recorded(p)}
        ref = self.conn.call("network.create", {"name_label": physical, "name_description": "", "MTU": "1500",
                                                "other_config": other, "tags": []})
        if p.get("vlan") is not None:
            try:
                pif = self.physical_pif(p["bridge"])
                if pif is None:
                    raise ProviderError(f"the pool master has no physical interface {p['bridge']!r} to put VLAN "
                                        f"{p['vlan']} on")
                self.conn.call("pool.create_VLAN_from_PIF", pif, ref, str(p["vlan"]))
            except ProviderError:
                # a network without its VLAN is not left behind: the next plan would take it for one crane made
                self.conn.call("network.destroy", ref)
                raise
        return read_network(self.conn, ref)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        ref = self.find(physical)
        return None if ref is None else read_network(self.conn, ref)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        ref = self.find(physical)
        if ref is None:
            raise ProviderError(f"network {physical!r} is not in the pool")
        self.conn.call("network.remove_from_other_config", ref, NETWORK_KEY)
        self.conn.call("network.add_to_other_config", ref, NETWORK_KEY, recorded(after))
        return read_network(self.conn, ref)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        ref = self.find(physical)
        if ref is None:
            return
        for pif in self.conn.call("network.get_PIFs", ref):
            vlan = self.conn.call("PIF.get_VLAN_master_of", pif)
            try:
                if vlan != "OpaqueRef:NULL":
                    self.conn.call("VLAN.destroy", vlan)
            except XenApiError as exc:
                if exc.code != "HANDLE_INVALID":
                    raise
        self.conn.call("network.destroy", ref)
