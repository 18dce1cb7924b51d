"""Address pools in a stack: ``IPv4Pool`` and ``IPv6Pool`` say which range a pool hands out, and ``pool.subnet()``
or ``network.address()`` stand for a value the pool leases to the resource that takes it::

    office = IPv4Pool("office", cidr="10.20.0.0/16", subnet_prefixlen=24, reserved=["10.20.0.0/24"])
    six = IPv6Pool("six", prefix="fd00:20::/48")                  # /64 subnets
    lan = Network("lan", mode="isolated", ipv4=office.subnet(), ipv6=six.subnet())
    Container("db", networks=[lan], ipv4=[lan.address()], init=[...])

A pool is not a resource of the stack: it lives in the state database, shared by every stack of it, and each stack
that names it must declare it alike. The value a resource takes is chosen at plan time (the plan shows it) and is
the resource's for as long as the resource lives, whatever else the stack declares or reorders: it is keyed by the
resource's address and the field that takes it (``ipv4``, ``ipv4[0]``).

While the stack runs, a value not leased yet stands in as a provisional one (the pool's n-th value, so that no two
stand-ins collide); the engine leases the real values and runs the stack again with them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crane_iac.errors import Diagnostic
from crane_iac.ipam.pools import IpamError, PoolSpec
from crane_iac.resources.macs import eui64_address, nic_macs
from crane_iac.resources.registry import current_registry

What = Literal["address", "subnet"]


@dataclass(frozen=True, slots=True)
class Leased:
    """A value ``pool`` will lease to the resource field that takes it."""

    pool: PoolSpec
    what: What
    #: the pool a network's own pool of addresses was carved from ("" for a pool a stack declares)
    parent: str = ""
    #: a network's pool whose subnet is itself a stand-in: its values are stand-ins too, and are leased once the
    #: subnet is; (the network's address, its field) names the subnet
    waits_for: tuple[str, str] | None = None
    #: the value asked for, when the stack names one (checked against the pool: inside it, not reserved, not
    #: leased to another), as the stack wrote it
    explicit: str | None = None
    #: the interface identifier of an ``explicit`` SLAAC address: in a stand-in subnet, the address is this one in
    #: the subnet leased at last
    interface_id: int | None = None

    def __repr__(self) -> str:
        return f"<{self.what} from pool {self.pool.name}>"


@dataclass(frozen=True, slots=True)
class LeaseWant:
    """What the stack asked a pool for, and which resource field takes it."""

    pool: str
    address: str
    slot: str
    what: What
    explicit: str | None = None


@dataclass(frozen=True, slots=True)
class DeferredWant:
    """An address the stack takes from a network whose subnet is a stand-in in this run: leased from the network's
    pool once the subnet is (``parent``: the pool the subnet comes from)."""

    parent: str
    network: str
    field: str
    address: str
    slot: str
    explicit: str | None = None
    interface_id: int | None = None

    def explicit_in(self, subnet: str) -> str | None:
        """The value named, once the network's subnet is leased as ``subnet``: a SLAAC address moves into it."""
        if self.interface_id is None:
            return self.explicit
        network = ipaddress.IPv6Network(subnet)
        return str(ipaddress.IPv6Address(int(network.network_address) >> 64 << 64 | self.interface_id))


class _Pool:
    """The part IPv4Pool and IPv6Pool share: registering with the stack that runs, and the values it hands out."""

    family = 4

    def __init__(self, name: str, network: str, reserved: Sequence[str], subnet_prefixlen: int | None) -> None:
        registry = current_registry()
        where = registry.location() if registry is not None else (None, None)
        try:
            self.spec = PoolSpec.parse(name, network, reserved=list(reserved), subnet_prefixlen=subnet_prefixlen,
                                       family=self.family)
        except IpamError as exc:
            if registry is None:
                raise
            registry.diagnostics.append(Diagnostic(str(exc), where[0], where[1], f"pool.{name}"))
            self.spec = PoolSpec.parse(name, "::/128" if self.family == 6 else "0.0.0.0/32")
            return
        if registry is not None:
            registry.resolver = resolve_fields
            known = registry.pools.get(name)
            if known is not None and known != self.spec:
                registry.diagnostics.append(Diagnostic(f"pool {name!r} is declared twice, differently", where[0],
                                                       where[1], f"pool.{name}"))
            registry.pools[name] = self.spec

    @property
    def name(self) -> str:
        return self.spec.name

    def subnet(self) -> Leased:
        """A subnet of the pool's ``subnet_prefixlen``, for a network's ``ipv4`` or ``ipv6``."""
        return Leased(self.spec, "subnet")

    def address(self) -> Leased:
        """One address of the pool."""
        return Leased(self.spec, "address")


class IPv4Pool(_Pool):
    """A pool of IPv4 addresses or subnets. ``reserved``: addresses and ranges it never hands out."""

    family = 4

    def __init__(self, name: str, *, cidr: str, reserved: Sequence[str] = (), subnet_prefixlen: int | None = 24
                 ) -> None:
        super().__init__(name, cidr, reserved, subnet_prefixlen)


class IPv6Pool(_Pool):
    """A pool of IPv6 subnets (``/64`` by default: what SLAAC and DHCPv6 need) or addresses."""

    family = 6

    def __init__(self, name: str, *, prefix: str, subnet_prefixlen: int | None = 64,
                 reserved: Sequence[str] = ()) -> None:
        super().__init__(name, prefix, reserved, subnet_prefixlen)


def network_pool(parent: str, subnet: str, *, waits_for: tuple[str, str] | None = None,
                 explicit: str | None = None, interface_id: int | None = None) -> Leased:
    """A network's own pool of addresses, carved from pool ``parent``: its subnet less the host's address (the
    first) and, for IPv4, the upper half, which the network's DHCP server hands out to guests that ask."""
    return Leased(_network_spec(parent, subnet), "address", parent, waits_for, explicit, interface_id)


@functools.lru_cache(maxsize=4096)
def _network_spec(parent: str, subnet: str) -> PoolSpec:
    """The pool of one network's addresses (made once per network and process: every NIC on it asks)."""
    net = ipaddress.ip_network(subnet)
    first = net.network_address + 1
    reserved = [str(first)]
    if net.version == 4 and net.num_addresses >= 8:
        reserved.append(str(list(net.subnets(prefixlen_diff=1))[1]))
    elif net.version == 6:
        reserved.append(f"{net.network_address + 0x100}/120")  # the DHCPv6 slice, ::100 to ::1ff
    return PoolSpec.parse(f"{parent}:{subnet}", str(net), reserved=reserved, subnet_prefixlen=None)


def leased_fields(data: dict[str, Any]) -> frozenset[str]:
    """The fields of ``data`` that take a value from an address pool."""
    return frozenset(key for key, value in data.items() if isinstance(value, Leased) or (
        isinstance(value, list) and any(isinstance(v, Leased) for v in value)))


def resolve_fields(registry: Any, kind: str, address: str, data: dict[str, Any], physical: str = ""
                   ) -> tuple[dict[str, Any], frozenset[str]]:
    """``data`` with the values taken from pools resolved, and the fields that took one (the registry's resolver;
    ``physical``: the resource's name on the hypervisor, which its NICs' MACs derive from). A NIC on a network whose
    subnet comes from a pool takes its address of each family from the network's pool (``NicFamily``)."""
    if kind in _NIC_FIELDS and isinstance(data.get("networks"), list):
        for family in _NIC_FIELDS[kind]:
            data = _nics(registry, address, data, family, nic_macs(kind, physical, len(data["networks"])))
    leased = leased_fields(data)
    return (resolve(registry, address, data), leased) if leased else (data, leased)


@dataclass(frozen=True, slots=True)
class NicFamily:
    """How a kind's NICs take their addresses of one family from their networks' pools."""

    #: the resource's field holding the NICs' addresses, one per network, and the network's subnet field
    field: str
    subnet: str
    #: with the field left out, the model wants an address on every network (a container's ipv4): leased only then
    every_nic: bool = False
    #: a NIC's address is its SLAAC one (the EUI-64 of its MAC in the /64), leased as if named, also for a None
    slaac: bool = False
    #: a value named must be that SLAAC address (a VM's guest takes it itself: crane cannot give it another)
    slaac_only: bool = False


#: the fields of each kind that hold its NICs' addresses, per family (docs/decisions/address-pools.md)
_NIC_FIELDS = {
    "container": (NicFamily("ipv4", "ipv4", every_nic=True), NicFamily("ipv6", "ipv6", slaac=True)),
    "vm": (NicFamily("nic_ipv4", "ipv4"), NicFamily("nic_ipv6", "ipv6", slaac=True, slaac_only=True)),
}


def _nics(registry: Any, address: str, data: dict[str, Any], family: NicFamily, macs: list[str]
          ) -> dict[str, Any]:
    """``data`` with its NICs' addresses of ``family`` on networks whose subnet comes from a pool taken from those
    networks' pools: an address named is leased (and so checked); with none given at all each such NIC leases one
    (IPv4: the next free; a VM's other NICs then have no reservation, and a container needs an address on every
    network); an IPv6 NIC left out or None leases its SLAAC address."""
    networks = data["networks"]
    pooled = [getattr(net, "address", None) is not None and (net.address, family.subnet) in registry.carved
              and isinstance(getattr(net, family.subnet, None), str) for net in networks]
    if not any(pooled):
        return data
    given = data.get(family.field)
    left_out = given is None or given == []
    if left_out:
        if family.every_nic and not all(pooled):
            return data  # the model says one address per network is wanted
        given = [None] * len(networks)
    if not isinstance(given, list):
        return data
    out: list[Any] = []
    for i, value in enumerate(given):
        # a None named in IPv4 is a NIC without an address of the pool (a VM's NIC without a reservation)
        if i < len(networks) and pooled[i] and (isinstance(value, str) or (value is None and (
                left_out or family.slaac))):
            net, slaac = networks[i], None
            subnet = getattr(net, family.subnet)
            if family.slaac and i < len(macs):
                slaac = eui64_address(subnet, macs[i])
                if family.slaac_only and value is not None and _plain(value, "address") != slaac:
                    where = registry.location()
                    registry.diagnostics.append(Diagnostic(
                        f"{family.field}[{i}] {value!r}: the guest takes its address on {net.address} by SLAAC, "
                        f"{slaac} (its MAC's EUI-64); leave {family.field} out, or name that one", where[0], where[1],
                        address))
                    out.append(value)
                    continue
            explicit = value if value is not None else slaac
            if explicit is None:
                out.append(net.lease(ipv6=family.subnet == "ipv6"))
                continue
            stand_in = (net.address, family.subnet) in registry.stand_in_slots
            out.append(network_pool(registry.carved[net.address, family.subnet], subnet, explicit=explicit,
                                    waits_for=(net.address, family.subnet) if stand_in else None,
                                    interface_id=_interface_id(slaac) if value is None and slaac else None))
        else:
            out.append(value)
    return {**data, family.field: out}


def _interface_id(address: str) -> int:
    """The low 64 bits of an IPv6 address: its interface identifier."""
    return int(ipaddress.IPv6Address(address)) & (2**64 - 1)


def resolve(registry: Any, address: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each Leased value replaced by the value its pool leases to (address, field): the one the
    engine leased, or a provisional stand-in, noted as a want either way."""
    out = dict(data)
    for key, value in data.items():
        if isinstance(value, Leased):
            out[key] = _value(registry, address, key, value)
        elif isinstance(value, list) and any(isinstance(v, Leased) for v in value):
            out[key] = [_value(registry, address, f"{key}[{i}]", v) if isinstance(v, Leased) else v
                        for i, v in enumerate(value)]
    return out


def _value(registry: Any, address: str, slot: str, token: Leased) -> str:
    pool = token.pool
    if token.what == "subnet":
        registry.carved[address, slot] = pool.name
    explicit = _plain(token.explicit, token.what) if token.explicit is not None else None
    if token.waits_for is not None:
        registry.deferred_wants.append(DeferredWant(token.parent, *token.waits_for, address, slot, explicit,
                                                    token.interface_id))
    else:
        registry.pools.setdefault(pool.name, pool)
        if token.parent:
            registry.pool_parents[pool.name] = token.parent
        registry.lease_wants.append(LeaseWant(pool.name, address, slot, token.what, explicit))
        leased = registry.leases.get((pool.name, address, slot))
        if leased is not None and explicit in (None, leased):
            return str(token.explicit if token.explicit is not None else leased)
    if token.explicit is not None:  # the value named, to be leased (and checked) before the plan
        registry.provisional = True
        _stood_in(registry, token, address, slot, _plain(token.explicit, token.what), explicit)
        return token.explicit
    # a stand-in: the pool's next value in this run, so that no two collide (the engine leases the real ones)
    registry.provisional = True
    registry.stand_in_slots.add((address, slot))
    key = (pool.name, token.what)
    if key not in registry.stand_ins:
        # values this stack holds already are not stood in for another resource (its host claims would clash)
        held = [ipaddress.ip_network(v, strict=False) for (name, _, _), v in registry.leases.items()
                if name == pool.name]
        taken = [(int(n.network_address), int(n.broadcast_address)) for n in held]
        if token.what == "subnet":
            size = 2 ** (pool.network.max_prefixlen - (pool.subnet_prefixlen or pool.network.prefixlen))
            registry.stand_ins[key] = (f"{ipaddress.ip_address(s)}/{pool.subnet_prefixlen}"
                                       for s in pool.space("subnet").free_blocks(size, taken))
        else:
            registry.stand_ins[key] = (str(ipaddress.ip_address(v)) for v in pool.space("address").free(taken))
    stand_in = next(registry.stand_ins[key], None)
    if stand_in is None:  # even with no other stack's leases the pool could not give it
        noun = "addresses" if token.what == "address" else f"/{pool.subnet_prefixlen} subnets"
        raise IpamError(f"pool {pool.name!r} ({pool.network}) is exhausted: this stack takes more {noun} than it "
                        f"has; widen the pool, or take fewer (crane ipam show {pool.name})")
    _stood_in(registry, token, address, slot, str(stand_in), None)
    return str(stand_in)


def _stood_in(registry: Any, token: Leased, address: str, slot: str, value: str, explicit: str | None) -> None:
    """Note the value a run took for ``token`` before it is leased (a stand-in, or the one named: ``explicit``) as
    the lease a run with leases must find to take the same one; and, for a network whose subnet is itself a
    stand-in, the want that run would note instead of the deferred one (its pool is this token's once the subnet
    leased is the one that stood in)."""
    registry.stood_in[token.pool.name, address, slot] = value
    if token.waits_for is not None:
        registry.waiting_wants.append((LeaseWant(token.pool.name, address, slot, token.what, explicit), token.pool,
                                       token.parent))


def _plain(text: str, what: What) -> str:
    """A value as a lease holds it: an address without its prefix (``10.0.0.5/24`` → ``10.0.0.5``), a subnet as
    a network; text that is neither stays as it is, for the allocator to refuse."""
    try:
        if what == "subnet":
            return str(ipaddress.ip_network(text, strict=True))
        return str(ipaddress.ip_interface(text).ip)
    except ValueError:
        return text
