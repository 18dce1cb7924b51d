"""VM: a virtual machine with vCPUs, memory, disks from Volumes and NICs on Networks."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, InstanceOf, field_validator, model_validator

from crane_iac.resources.base import Output, Resource, plain
from crane_iac.resources.cloudinit import CloudInit
from crane_iac.resources.macs import eui64_address, nic_macs
from crane_iac.resources.network import Network, announces_slaac
from crane_iac.resources.volume import Volume


class VM(Resource):
    """A domain. ``max_memory_mib``/``max_vcpus`` bound what can change live (they default to the current values).

    ``kernel`` (with optional ``initrd`` and ``cmdline``) boots a kernel directly instead of from a disk: paths on
    the hypervisor host, readable by the user QEMU runs as. Changing any of them replaces the VM.

    After apply, ``ipv4`` is the address the first NIC leased from its network's DHCP server (crane waits for it
    when it starts a VM, up to the stack's ``address_timeout``), and ``addresses`` holds one per NIC; either is
    null while the guest holds no lease (stopped, no DHCP on that network, or it did not ask in time). ``ipv6`` is
    the first NIC's IPv6 address and ``ipv6_addresses`` one per NIC (null for a NIC without one): each NIC's
    ``nic_ipv6``, its SLAAC address on a network announcing a /64, whether the guest runs or not (the MAC and
    the network fix it, not a lease the guest holds), so a start, stop or restart keeps them and a plan shows
    them to what uses them. A container has the same outputs (its ``ipv6`` is the field).

    ``nic_ipv4`` reserves each NIC's IPv4 address in its network's DHCP server (a host entry for the NIC's MAC),
    one entry per network (None: no reservation). On a network whose subnet comes from an address pool every NIC
    gets one leased from the network's pool when it is left out, and one named is leased (and checked) too.

    ``nic_ipv6`` holds each NIC's IPv6 address on a network whose IPv6 subnet comes from an address pool: the
    address the guest forms itself by SLAAC from the network's router advertisements, the EUI-64 of the NIC's MAC
    in the network's /64, which crane leases so that nothing else is handed it (the guest must use EUI-64
    addresses, the Linux kernel's default, not stable-privacy ones: docs/decisions/address-pools.md). crane fills
    it in (an entry left out or None takes that address too); one named must be that address.

    ``template`` names the hypervisor's template the VM is made from (XenServer's ``VM.clone`` of a template);
    left out, the endpoint's default. libvirt makes a VM from its volumes (``volumes=[Volume(..., base=...)]``, or
    ``Volume(..., template=...)`` on a VM template of crane's template library) and refuses it.
    """

    kind = "vm"

    vcpus: int = Field(ge=1)  # a provider's own cap (libvirt: 255, QEMU's pc machine) is its rule
    memory_mib: int = Field(ge=16, le=4 * 1024 * 1024)
    max_vcpus: int | None = Field(default=None, ge=1)
    max_memory_mib: int | None = Field(default=None, ge=16, le=4 * 1024 * 1024)
    #: InstanceOf: a dict here is an error, not a Network built from it (and registered nowhere)
    networks: list[InstanceOf[Network]] = Field(default_factory=list)
    volumes: list[InstanceOf[Volume]] = Field(default_factory=list)
    running: bool = True
    autostart: bool = False
    description: str | Output | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = Field(default=None, max_length=4096)
    #: a cloud-init seed, attached as a read-only SATA CD-ROM; a seed whose contents change replaces the VM
    cloud_init: InstanceOf[CloudInit] | None = None
    #: the hypervisor's template or golden image the VM is made from (its name there); None: the endpoint's own
    #: default. A provider that builds VMs from volumes (libvirt) refuses it; changing it replaces the VM
    template: str | None = Field(default=None, min_length=1)
    #: each NIC's reserved IPv4 address (None: none), or empty: none reserved, or leased on a pool's networks
    nic_ipv4: list[str | None] = Field(default_factory=list)
    #: each NIC's SLAAC address on a network whose IPv6 subnet comes from a pool (crane fills them in and leases them)
    nic_ipv6: list[str | None] = Field(default_factory=list)

    @field_validator("kernel", "initrd")
    @classmethod
    def _host_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path on the hypervisor host")
        return value

    @model_validator(mode="after")
    def _maxima(self) -> VM:
        if (self.initrd or self.cmdline) and not self.kernel:
            raise ValueError("initrd and cmdline need kernel=<path of the kernel to boot directly>")
        if self.max_vcpus is not None and self.max_vcpus < self.vcpus:
            raise ValueError(f"max_vcpus ({self.max_vcpus}) is below vcpus ({self.vcpus})")
        if self.max_memory_mib is not None and self.max_memory_mib < self.memory_mib:
            raise ValueError(f"max_memory_mib ({self.max_memory_mib}) is below memory_mib ({self.memory_mib})")
        if self.nic_ipv4 and len(self.nic_ipv4) != len(self.networks):
            raise ValueError(f"nic_ipv4 has {len(self.nic_ipv4)} entries for {len(self.networks)} network(s): give "
                             "one per network (None for a NIC without a reservation)")
        for net, text in zip(self.networks, self.nic_ipv4, strict=False):
            if text is not None:
                reserved_address(net, text)
        if self.nic_ipv6 and len(self.nic_ipv6) != len(self.networks):
            raise ValueError(f"nic_ipv6 has {len(self.nic_ipv6)} entries for {len(self.networks)} network(s): give "
                             "one per network (None for a NIC on a network without a pool's IPv6 subnet)")
        for net, text in zip(self.networks, self.nic_ipv6, strict=False):
            if text is not None:
                slaac_address(net, text)
        return self

    @property
    def uuid(self) -> Output:
        """The hypervisor's UUID for the domain, known after apply."""
        return Output(self, "uuid")

    @property
    def ipv4(self) -> Output:
        """The first NIC's IPv4 address, leased by DHCP; known once the guest has booted and asked for it."""
        return Output(self, "ipv4")

    def reachable_address(self) -> Output:
        """Where crane reaches the guest to configure it: its first NIC's DHCP lease."""
        return self.ipv4

    @property
    def addresses(self) -> Output:
        """Every NIC's leased IPv4 address (or null), in NIC order."""
        return Output(self, "addresses")

    @property
    def ipv6(self) -> Output:
        """The first NIC's IPv6 address (``nic_ipv6[0]``: its SLAAC address, leased), or null; a restart keeps it."""
        return Output(self, "ipv6")

    @property
    def ipv6_addresses(self) -> Output:
        """Every NIC's IPv6 address (``nic_ipv6``), null for a NIC without one, in NIC order; a restart keeps them."""
        return Output(self, "ipv6_addresses")

    @property
    def macs(self) -> list[str]:
        """The MAC of each NIC, derived from the VM's name so it is stable across replacements and moves."""
        # keyed by kind and hypervisor name: a VM moved to a new address keeps its name and so its MACs
        return nic_macs(self.kind, self.physical_name, len(self.networks))

    def _ipv6(self) -> list[str | None]:
        """Each NIC's IPv6 address: the one leased, or the SLAAC one on any network that announces its /64 for
        SLAAC (as the network's read-back reports it); None where the guest forms none crane can know."""
        given = self.nic_ipv6 or [None] * len(self.networks)
        return [ip6 or (eui64_address(net.ipv6, mac) if net.ipv6 and announces_slaac(net) else None)
                for net, mac, ip6 in zip(self.networks, self.macs, given, strict=True)]

    def properties(self) -> dict[str, Any]:
        return {
            "vcpus": self.vcpus,
            "max_vcpus": self.max_vcpus or self.vcpus,
            "memory_mib": self.memory_mib,
            "max_memory_mib": self.max_memory_mib or self.memory_mib,
            "nics": [
                {"network": net.physical_name, "mac": mac, **({"ipv4": ip} if ip else {}),
                 **({"ipv6": ip6} if ip6 else {})}
                for net, mac, ip, ip6 in zip(self.networks, self.macs, self.nic_ipv4 or [None] * len(self.networks),
                                             self._ipv6(), strict=True)
            ],
            "disks": [vol.reference for vol in self.volumes],
            "running": self.running,
            "autostart": self.autostart,
            "description": plain(self.description),
            "kernel": self.kernel,
            "initrd": self.initrd,
            "cmdline": self.cmdline,
            "cloud_init": self.cloud_init.reference if self.cloud_init is not None else None,
            # left out unless given: a VM without one reads and records as it always has
            **({"template": self.template} if self.template is not None else {}),
        }


def reserved_address(net: Network, text: str) -> str:
    """A NIC's reserved address on ``net`` (an IPv4 address in its subnet, not its network, broadcast or host
    address); ValueError saying what is wrong with it."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"nic_ipv4 {text!r} is not an IPv4 address (give it without a prefix)") from None
    if not net.ipv4:
        raise ValueError(f"nic_ipv4 {text!r}: {net.address} has no ipv4 subnet whose DHCP server could reserve it")
    subnet = ipaddress.IPv4Network(net.ipv4)
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address,
                                            subnet.network_address + 1):
        raise ValueError(f"nic_ipv4 {text!r} is not a guest's address in {net.address}'s subnet {subnet}")
    return str(address)


def slaac_address(net: Network, text: str) -> str:
    """A NIC's SLAAC address on ``net``, whose IPv6 subnet must come from an address pool (such a network announces
    its /64 by router advertisements); ValueError saying what is wrong with it. That it is the NIC's own EUI-64 is
    checked where the MAC is known (resources/ippools.py)."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"nic_ipv6 {text!r} is not an IPv6 address (give it without a prefix)") from None
    if not net.ipv6 or "ipv6" not in net.meta.leased:
        raise ValueError(f"nic_ipv6 {text!r}: {net.address}'s ipv6 subnet does not come from an address pool; a VM's "
                         "IPv6 address is leased on such a network only (leave nic_ipv6 out here)")
    if address not in ipaddress.IPv6Network(net.ipv6):
        raise ValueError(f"nic_ipv6 {text!r} is outside {net.address}'s subnet {net.ipv6}")
    return str(address)
