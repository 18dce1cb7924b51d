"""Container: a process tree in namespaces (libvirt's LXC driver) running one program of its host, on Networks with
fixed addresses, with directory Volumes mounted read-write."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import posixpath
import re
from typing import Any

from pydantic import Field, InstanceOf, field_validator, model_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Output, Resource, plain
from crane_iac.resources.macs import nic_macs
from crane_iac.resources.network import Network
from crane_iac.resources.volume import Volume

#: what a container may write by default: temporary files, run state, logs, and root's home (Ansible writes its
#: temporary files under /root); each is a tmpfs, emptied when the container stops
DEFAULT_WRITABLE = ("/tmp", "/run", "/var/log", "/var/tmp", "/root")
#: network modes where the host has the subnet's first address and routes for the guests
ROUTED_MODES = frozenset({"nat", "route", "open"})
#: the names libvirt accepts for an init's environment variable
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _directory(value: str, what: str) -> str:
    """An absolute directory path, normalised as libvirt stores it."""
    if not value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be an absolute path")
    normal = posixpath.normpath(value)
    return normal[1:] if normal.startswith("//") else normal


def nic_device(physical: str, index: int) -> str:
    """The host side of a NIC's veth pair: ``cn`` + a digest of the container's name + the NIC's index, at most 15
    characters (the kernel's limit) and the same on every run, so that no two daemons race for a ``vnetN``."""
    return f"cn{hashlib.sha256(f'container.{physical}'.encode()).hexdigest()[:8]}-{index}"


class Container(Resource):
    """A container running ``init`` (an argv list; its first element an absolute path within ``root``) as its first
    process, with ``init_env`` as its environment (values may be ``Output``s of other resources).

    ``root`` (default ``/``: the host's own programs) is passed through read-only as the container's ``/``; with
    ``template`` (the name of a container template in the host's template library, docs/guides/templates.md) the
    root is that template's layers over ``root``, which must be the directory the template was built on; each
    directory in ``writable`` is a fresh tmpfs, and ``mounts`` maps a path in the container to a directory
    ``Volume`` (``format="dir"``) passed through read-write: what the container keeps lives there. A path in
    ``writable`` or ``mounts`` must exist in ``root``, or lie under another of them.

    Each of ``networks`` gets one NIC with the fixed address of the same position in ``ipv4`` (``"10.80.0.12"``,
    inside the network's ``ipv4`` subnet; ``"192.168.1.50/24"`` on a network without one); libvirt sets it inside
    the container, with a default route through the host for the first NIC on a ``nat``, ``route`` or ``open``
    network. ``ipv6`` likewise gives each NIC an IPv6 address (None: none; ``"fd00:20:0:1::12"``, inside the
    network's ``ipv6`` subnet), with a default route through the host for the first NIC on a routed network; on a
    network whose IPv6 subnet comes from an address pool a NIC left out (or None) takes its SLAAC address (the
    EUI-64 of its MAC, which it would form from the network's router advertisements anyway), leased, and one named
    is leased and checked. ``memory_mib`` is the limit of the container's memory cgroup: a process that needs more
    is killed (the container keeps running). A changed setting restarts the container (same UUID); only ``running`` and
    ``autostart`` change without a restart. Needs an endpoint with ``uri = "lxc:///system"`` (or the sandbox).

    Its outputs are a VM's: ``uuid``, ``ipv4`` and ``addresses`` (each NIC's IPv4 address), ``ipv6`` and
    ``ipv6_addresses`` (each NIC's IPv6 address, None for a NIC without one). The fields ``ipv4`` and ``ipv6``
    hold the same addresses as plain values, leased ones included, known at plan time (``export("db", db.ipv6)``
    shows them in the plan); the outputs ``addresses`` and ``ipv6_addresses`` order what uses them after the
    container, and are known once it exists.
    """

    kind = "container"
    #: containers and VMs are libvirt domains: their names share one name space on an endpoint
    kind_rule = Kind("container", namespace="vm")

    memory_mib: int = Field(ge=16, le=4 * 1024 * 1024)
    vcpus: int = Field(default=1, ge=1)
    networks: list[InstanceOf[Network]] = Field(default_factory=list)
    ipv4: list[str] = Field(default_factory=list)
    #: each NIC's IPv6 address (None: none), or empty: none, or on a pool's networks each NIC's SLAAC one, leased
    ipv6: list[str | None] = Field(default_factory=list)
    init: list[str] = Field(min_length=1)
    init_env: dict[str, str | Output] = Field(default_factory=dict)
    root: str = "/"
    #: a container template of the host's library, layered over ``root`` (None: the root alone)
    template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    writable: list[str] = Field(default_factory=lambda: list(DEFAULT_WRITABLE))
    mounts: dict[str, InstanceOf[Volume]] = Field(default_factory=dict)
    running: bool = True
    autostart: bool = False

    @field_validator("init")
    @classmethod
    def _init(cls, value: list[str]) -> list[str]:
        if value and not value[0].startswith("/"):
            raise ValueError(f"init program {value[0]!r} must be an absolute path within the container's root "
                             "(e.g. '/usr/bin/python3')")
        return value

    @field_validator("init_env")
    @classmethod
    def _env(cls, value: dict[str, str | Output]) -> dict[str, str | Output]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"init_env name(s) {bad}: use letters, digits and '_', not starting with a digit")
        return value

    @field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        return _directory(value, "root")

    @field_validator("writable")
    @classmethod
    def _writable(cls, value: list[str]) -> list[str]:
        paths = [_directory(path, "writable directory") for path in value]
        if "/" in paths:
            raise ValueError("the root cannot be writable: name the directories the container writes")
        return paths

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, value: dict[str, Volume]) -> dict[str, Volume]:
        mounts = {_directory(path, "mount point"): vol for path, vol in value.items()}
        if "/" in mounts:
            raise ValueError("a volume cannot be mounted on '/': the root is root=")
        not_dirs = [f"{path} ({vol.address}, format {vol.format!r})" for path, vol in mounts.items()
                    if vol.format != "dir"]
        if not_dirs:
            raise ValueError(f"a container mounts directory volumes only (Volume(..., format='dir')): "
                             f"{', '.join(not_dirs)}")
        return mounts

    @model_validator(mode="after")
    def _layout(self) -> Container:
        both = sorted(set(self.writable) & set(self.mounts))
        if both:
            raise ValueError(f"{', '.join(both)}: both writable and mounted; keep one")
        if len(self.ipv4) != len(self.networks):
            raise ValueError(f"give one ipv4 address per network: {len(self.networks)} network(s), "
                             f"{len(self.ipv4)} address(es) (they are set from outside the container; nothing in "
                             "it asks DHCP)")
        for net, text in zip(self.networks, self.ipv4, strict=True):
            _address(net, text)
        if self.ipv6 and len(self.ipv6) != len(self.networks):
            raise ValueError(f"give one ipv6 entry per network (None for a NIC without one): "
                             f"{len(self.networks)} network(s), {len(self.ipv6)} entries")
        for net, text6 in zip(self.networks, self.ipv6, strict=False):
            if text6 is not None:
                _address6(net, text6)
        return self

    @property
    def uuid(self) -> Output:
        """The hypervisor's UUID for the domain, known after apply."""
        return Output(self, "uuid")

    def reachable_address(self) -> str:
        """Where crane reaches the container to configure it: its first fixed address (without a prefix)."""
        if not self.ipv4:
            raise ValueError(f"{self.address} has no fixed address crane could reach it at")
        return self.ipv4[0].split("/", 1)[0]

    @property
    def addresses(self) -> Output:
        """Every NIC's fixed address, in NIC order, once the container exists (``ipv4`` holds them already, as
        plain values: an output also orders what uses it after the container)."""
        return Output(self, "addresses")

    @property
    def ipv6_addresses(self) -> Output:
        """Every NIC's IPv6 address (None for a NIC without one), in NIC order, once the container exists (``ipv6``
        holds them already, leased ones too, as plain values; the output's name is a VM's, ``ipv6`` being the
        field)."""
        return Output(self, "ipv6_addresses")

    @property
    def macs(self) -> list[str]:
        """The MAC of each NIC, derived from the container's name as a VM's are."""
        return nic_macs(self.kind, self.physical_name, len(self.networks))

    def host_claims(self) -> list[tuple[str, str]]:
        # two NICs with one address on one network would answer for each other
        return [("ipv4 address", f"{net.physical_name}/{_address(net, text)[0]}")
                for net, text in zip(self.networks, self.ipv4, strict=True)] + [
                ("ipv6 address", f"{net.physical_name}/{_address6(net, text)[0]}")
                for net, text in zip(self.networks, self.ipv6, strict=False) if text is not None]

    def properties(self) -> dict[str, Any]:
        nics = []
        ipv6 = self.ipv6 or [None] * len(self.networks)
        for index, (net, text, text6, mac) in enumerate(zip(self.networks, self.ipv4, ipv6, self.macs, strict=True)):
            address, prefix = _address(net, text)
            gateway = None
            if index == 0 and net.ipv4 and net.mode in ROUTED_MODES:
                gateway = str(ipaddress.IPv4Network(net.ipv4).network_address + 1)
            nic: dict[str, Any] = {"network": net.physical_name, "mac": mac, "ipv4": address, "prefix": prefix,
                                   "gateway": gateway, "device": nic_device(self.physical_name, index)}
            if text6 is not None:  # the keys only a NIC with an IPv6 address has (as read back)
                address6, prefix6 = _address6(net, text6)
                gateway6 = None
                if index == 0 and net.ipv6 and net.mode in ROUTED_MODES:
                    gateway6 = str(ipaddress.IPv6Network(net.ipv6).network_address + 1)
                nic.update(ipv6=address6, ipv6_prefix=prefix6, ipv6_gateway=gateway6)
            nics.append(nic)
        template = {"template": self.template} if self.template is not None else {}  # the key only such a one has
        return {
            **template,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "nics": nics,
            "init": list(self.init),
            "init_env": {name: plain(value) for name, value in self.init_env.items()},
            "root": self.root,
            "writable": sorted(set(self.writable)),  # as read back: the template mounts them in path order
            "mounts": {path: vol.reference for path, vol in self.mounts.items()},
            "running": self.running,
            "autostart": self.autostart,
        }


def _address(net: Network, text: str) -> tuple[str, int]:
    """A NIC's fixed address and prefix length on ``net``; ValueError saying what is wrong with it."""
    return _checked_address(net.address, net.ipv4, text)


@functools.lru_cache(maxsize=65536)
def _checked_address(network: str, subnet_text: str | None, text: str) -> tuple[str, int]:
    """``_address`` by value: a load asks three times per NIC (validation, host claims, properties), and parsing
    addresses was most of the time a 10,000-container stack took to load."""
    net = _NetworkFacts(network, subnet_text)
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"ipv4 {text!r} is not an IPv4 address") from None
    if not net.ipv4:
        if "/" not in text:
            raise ValueError(f"{net.address} has no ipv4 subnet: give the address with its prefix "
                             f"({text}/24, say)")
        return str(iface.ip), iface.network.prefixlen
    subnet = ipaddress.IPv4Network(net.ipv4)
    if "/" in text and iface.network.prefixlen != subnet.prefixlen:
        raise ValueError(f"ipv4 {text!r}: {net.address} is {subnet}; drop the prefix or give /{subnet.prefixlen}")
    if iface.ip not in subnet:
        raise ValueError(f"ipv4 {str(iface.ip)!r} is outside {net.address}'s subnet {subnet}")
    reserved = {subnet.network_address: "the network's own address", subnet.broadcast_address: "its broadcast address",
                subnet.network_address + 1: "the host's address on it"}
    if iface.ip in reserved:
        raise ValueError(f"ipv4 {str(iface.ip)!r} is {reserved[iface.ip]} ({net.address}, {subnet}); "
                         "choose another")
    return str(iface.ip), subnet.prefixlen


def _address6(net: Network, text: str) -> tuple[str, int]:
    """A NIC's IPv6 address and prefix length on ``net``; ValueError saying what is wrong with it."""
    return _checked_address6(net.address, net.ipv6, text)


@functools.lru_cache(maxsize=65536)
def _checked_address6(network: str, subnet_text: str | None, text: str) -> tuple[str, int]:
    try:
        iface = ipaddress.IPv6Interface(text)
    except ValueError:
        kind = "an IPv4 address: give an IPv6 one" if _is_ipv4(text) else "not an IPv6 address"
        raise ValueError(f"ipv6 {text!r} is {kind}") from None
    if not subnet_text:
        if "/" not in text:
            raise ValueError(f"{network} has no ipv6 subnet: give the address with its prefix ({text}/64, say)")
        return str(iface.ip), iface.network.prefixlen
    subnet = ipaddress.IPv6Network(subnet_text)
    if "/" in text and iface.network.prefixlen != subnet.prefixlen:
        raise ValueError(f"ipv6 {text!r}: {network} is {subnet}; drop the prefix or give /{subnet.prefixlen}")
    if iface.ip not in subnet:
        raise ValueError(f"ipv6 {str(iface.ip)!r} is outside {network}'s subnet {subnet}")
    reserved = {subnet.network_address: "the subnet-router anycast address",
                subnet.network_address + 1: "the host's address on it"}
    if iface.ip in reserved:
        raise ValueError(f"ipv6 {str(iface.ip)!r} is {reserved[iface.ip]} ({network}, {subnet}); choose another")
    return str(iface.ip), subnet.prefixlen


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Interface(text)
    except ValueError:
        return False
    return True


class _NetworkFacts:
    """What ``_checked_address`` reads of a network: its address and its ipv4 subnet."""

    __slots__ = ("address", "ipv4")

    def __init__(self, address: str, ipv4: str | None) -> None:
        self.address = address
        self.ipv4 = ipv4
