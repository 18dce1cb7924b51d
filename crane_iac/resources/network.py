"""Network: a virtual network on the hypervisor, in one of six modes, optionally with a VLAN tag."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from crane_iac.errors import CraneError
from crane_iac.resources.base import Resource
from crane_iac.resources.registry import current_registry

#: open: routed like ``route`` but libvirt adds no firewall rules (the host's own firewall decides).
NetworkMode = Literal["nat", "isolated", "route", "open", "bridge", "openvswitch"]
#: Modes where the host bridge exists already and libvirt manages no addresses.
EXTERNAL_BRIDGE_MODES = frozenset({"bridge", "openvswitch"})


class Network(Resource):
    """A virtual network. ``ipv4``/``ipv6`` are subnets in CIDR form; the host takes the first address.

    ``vlan`` tags the network's ports where the provider can (libvirt: an Open vSwitch bridge; XenServer: a VLAN
    network on a PIF): one tag (``vlan=100``, an access port), or a list of tags (``vlan=[100, 200]``), a trunk that
    carries each of them to the NICs on it. A tag is 1 to 4094; two networks of a stack cannot put one tag on one
    bridge (a trunk may carry a tag another network gives its ports).

    An ``ipv6`` subnet from an address pool (``ipv6=pool.subnet()``) is announced by router advertisements for
    SLAAC, not served by DHCPv6: each NIC on it has the EUI-64 of its MAC, leased (docs/decisions/address-pools.md);
    ``dhcp`` is about IPv4 there."""

    kind = "network"

    mode: NetworkMode = "nat"
    bridge: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    vlan: int | list[int] | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    dhcp: bool = True

    @field_validator("ipv4", "ipv6")
    @classmethod
    def _subnet(cls, value: str | None, info: ValidationInfo) -> str | None:
        """IPv4 needs room for hosts (/30 or shorter); IPv6 a /64 or shorter, as SLAAC and DHCPv6 expect."""
        if value is None:
            return None
        version, longest = (4, 30) if info.field_name == "ipv4" else (6, 64)
        net = ipaddress.ip_network(value, strict=False)
        if net.version != version or net.prefixlen > longest:
            raise ValueError(f"{value!r} is not an IPv{version} subnet of prefix /{longest} or shorter")
        return str(net)

    @field_validator("vlan")
    @classmethod
    def _tags(cls, value: int | list[int] | None) -> int | list[int] | None:
        tags = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and not value:
            raise ValueError("a trunk needs at least one tag: vlan=[100, 200], or vlan=None for no tag")
        for tag in tags:
            if not 1 <= tag <= 4094:
                raise ValueError(f"a VLAN tag is 1 to 4094 (0 means untagged, 4095 is reserved), got {tag}")
        if len(set(tags)) < len(tags):
            raise ValueError(f"a trunk carries each tag once: {value}")
        return sorted(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _mode_rules(self) -> Network:
        if self.mode in EXTERNAL_BRIDGE_MODES:
            if not self.bridge:
                raise ValueError(f"mode={self.mode!r} needs bridge=<name of the existing host bridge>")
            if self.ipv4 or self.ipv6:
                raise ValueError(f"mode={self.mode!r} uses the host bridge's own addressing: drop ipv4/ipv6")
        if self.mode in ("route", "open") and not (self.ipv4 or self.ipv6):
            raise ValueError(f"mode={self.mode!r} needs an ipv4 or ipv6 subnet to route")
        return self

    def lease(self, address: str | None = None, *, ipv6: bool = False) -> Any:
        """An address of this network leased to the NIC that takes it (``Container(..., ipv4=[lan.lease()])``):
        from the network's own pool, its subnet less the host's address and the range its DHCP server hands out;
        ``address`` names the one wanted (it must be free in that pool). The subnet must come from an address
        pool (``ipv4=pool.subnet()``)."""
        from crane_iac.resources.ippools import network_pool

        family = "ipv6" if ipv6 else "ipv4"
        registry = current_registry()
        parent = registry.carved.get((self.address, family)) if registry is not None else None
        subnet = self.ipv6 if ipv6 else self.ipv4
        if parent is None or subnet is None:
            raise CraneError(f"{self.address}.lease(): its {family} subnet does not come from an address pool; "
                             f"give it {family}=POOL.subnet(), or give the NIC its address yourself")
        assert registry is not None
        stand_in = (self.address, family) in registry.stand_in_slots
        return network_pool(parent, subnet, waits_for=(self.address, family) if stand_in else None,
                            explicit=address)

    def host_claims(self) -> list[tuple[str, str]]:
        # a bridge libvirt creates for the network is the network's own; real libvirtd refuses a second one
        if self.bridge and self.mode not in EXTERNAL_BRIDGE_MODES:
            return [("bridge", self.bridge)]
        # an access tag on a shared bridge is the network's own: a second network with it would take its traffic
        if self.bridge and isinstance(self.vlan, int):
            return [("VLAN", f"{self.vlan} on bridge {self.bridge}")]
        return []

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {
            "mode": self.mode,
            "bridge": self.bridge,
            "vlan": self.vlan,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "dhcp": self.dhcp,
        }
        leased = self.meta.leased & {"ipv4", "ipv6"}
        if leased:  # its hosts' addresses are leased (lease()): its DHCP server keeps to the range they are not
            props["leases"] = sorted(leased)
        if "ipv6" in leased and not self.ipv4:  # a pool's IPv6 subnet is announced by SLAAC: no DHCP is served
            props["dhcp"] = False
        return props


def announces_slaac(net: Network) -> bool:
    """Whether ``net`` announces its IPv6 subnet for SLAAC (router advertisements with the autonomous flag, and no
    DHCPv6): a /64 from an address pool, or a /64 with ``dhcp=False``."""
    if not net.ipv6 or net.mode in EXTERNAL_BRIDGE_MODES or not net.ipv6.endswith("/64"):
        return False
    return not net.dhcp or "ipv6" in net.meta.leased
