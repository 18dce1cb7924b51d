"""Address pools and the leases they hand out, as the allocator sees them: which addresses a pool may give (its
range less what is reserved), which it has given (leases, each bound to a holder), and the choice of new ones.

A holder is a resource's place that needs a value: its stack, its address and a slot (``nic0``, ``ipv6``,
``subnet``). The same holder always gets the same value back while its lease lives, whatever else the stack
declares around it, so an address never moves under a running guest. Pure: the state store reads the leases and
writes the choices in one transaction.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from crane_iac.errors import CraneError
from crane_iac.ipam.space import Interval, Space

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
What = Literal["address", "subnet"]


class IpamError(CraneError):
    """A pool that cannot give what a stack asks of it; the message names the pool and what to do."""


@dataclass(frozen=True, slots=True, order=True)
class Holder:
    """Who holds a lease: a resource (by stack and address) and which of its values (``nic0``, ``subnet``)."""

    stack: str
    address: str
    slot: str

    def __str__(self) -> str:
        return f"{self.address} ({self.slot}) in stack {self.stack}"


@dataclass(frozen=True, slots=True)
class Lease:
    pool: str
    #: an address (``10.0.0.5``) or a subnet (``fd00:1:0:3::/64``)
    value: str
    holder: Holder


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A pool as the state database knows it: declared by a stack, shared by every stack."""

    name: str
    family: int
    network: str
    reserved: list[str]
    subnet_prefixlen: int | None
    #: for a network's own pool of addresses: the pool its subnet came from ("" for a pool a stack declares)
    parent: str
    declared_by: str


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A lease as the state database keeps it: ``planned`` from the plan that chose it until the apply that makes
    its resource, ``bound`` from then until the apply that deletes it."""

    pool: str
    value: str
    stack: str
    address: str
    slot: str
    state: str
    at: str


@dataclass(frozen=True, slots=True)
class Want:
    """A holder's request of a pool: an address or a subnet, a particular one (``explicit``) or the next free."""

    holder: Holder
    what: What = "address"
    explicit: str | None = None


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A pool as a stack declares it. ``subnet_prefixlen`` is the size of the subnets it carves (None: it hands out
    addresses only)."""

    name: str
    network: IPNetwork
    reserved: tuple[IPNetwork, ...] = ()
    subnet_prefixlen: int | None = None

    @classmethod
    def parse(cls, name: str, cidr: str, *, reserved: Sequence[str] = (), subnet_prefixlen: int | None = None,
              family: int | None = None) -> PoolSpec:
        """The pool from a stack's strings; a problem is an IpamError naming the pool and the value."""
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise IpamError(f"pool {name!r}: {cidr!r} is not a network in CIDR form ({exc})") from None
        if family is not None and network.version != family:
            raise IpamError(f"pool {name!r}: {cidr!r} is an IPv{network.version} network; an IPv{family} pool "
                            f"needs an IPv{family} prefix")
        blocked: list[IPNetwork] = []
        for text in reserved:
            try:
                item = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise IpamError(f"pool {name!r}: reserved {text!r} is not an address or a network") from None
            if item.version != network.version or not item.subnet_of(network):  # type: ignore[arg-type]
                raise IpamError(f"pool {name!r}: reserved {text!r} is outside the pool's {network}")
            blocked.append(item)
        if subnet_prefixlen is not None and not network.prefixlen <= subnet_prefixlen <= network.max_prefixlen:
            raise IpamError(f"pool {name!r}: it cannot carve /{subnet_prefixlen} subnets from {network}: use a "
                            f"prefix length from /{network.prefixlen} to /{network.max_prefixlen}")
        return cls(name, network, tuple(blocked), subnet_prefixlen)

    @property
    def family(self) -> int:
        return self.network.version

    def space(self, what: What = "address") -> Space:
        """What the pool may hand out as ``what``: for addresses an IPv4 pool keeps its network and broadcast
        addresses back (a /31 and a /32 have none), an IPv6 pool its subnet-router anycast address."""
        first, last = int(self.network.network_address), int(self.network.broadcast_address)
        blocked: list[Interval] = [(int(r.network_address), int(r.broadcast_address)) for r in self.reserved]
        if what == "address":
            if self.family == 4 and self.network.prefixlen <= 30:
                blocked += [(first, first), (last, last)]
            elif self.family == 6:
                blocked.append((first, first))
        return Space.of(first, last, blocked)

    def overlaps(self, other: PoolSpec) -> bool:
        return self.family == other.family and self.network.overlaps(other.network)


def allocate(pool: PoolSpec, leases: Iterable[Lease], wants: Sequence[Want]) -> dict[Holder, str]:
    """The value of each want: the one its holder leases already, else the explicit one asked for, else the lowest
    free one. Every problem (an explicit value outside the pool, reserved or leased by another; an exhausted pool)
    is one IpamError naming the pool and what to do; nothing is chosen then."""
    held: dict[Holder, str] = {}
    by_value: dict[str, Holder] = {}
    for lease in leases:
        held[lease.holder] = lease.value
        by_value[lease.value] = lease.holder
    chosen: dict[Holder, str] = {}
    problems: list[str] = []
    pending: dict[What, list[Want]] = {"address": [], "subnet": []}
    for want in wants:
        if want.holder in held and (want.explicit is None or _same(want.explicit, held[want.holder], want.what)):
            chosen[want.holder] = held[want.holder]
        elif want.explicit is not None:  # a value named (another than the holder's lease: it moves to it)
            problem = _explicit_problem(pool, want, by_value)
            if problem:
                problems.append(problem)
            else:
                value = _normal(want.explicit, want.what)
                chosen[want.holder] = value
                by_value[value] = want.holder
        else:
            pending[want.what].append(want)
    if problems:
        raise IpamError("\n".join(problems))
    if pending["address"]:
        space = pool.space("address")
        picks = _first(space.free(_intervals(by_value)), len(pending["address"]))
        if len(picks) < len(pending["address"]):
            raise IpamError(_exhausted(pool, "address", space.size, by_value.values(), pending["address"]))
        for want, pick in zip(pending["address"], picks, strict=False):
            chosen[want.holder] = str(ipaddress.ip_address(pick))
    if pending["subnet"]:
        if pool.subnet_prefixlen is None:
            raise IpamError(f"pool {pool.name!r} carves no subnets: give it subnet_prefixlen=…")
        size = 2 ** (pool.network.max_prefixlen - pool.subnet_prefixlen)
        space = pool.space("subnet")
        blocks = _first(space.free_blocks(size, _intervals(by_value)), len(pending["subnet"]))
        if len(blocks) < len(pending["subnet"]):
            raise IpamError(_exhausted(pool, "subnet", space.size // size, by_value.values(), pending["subnet"]))
        for want, start in zip(pending["subnet"], blocks, strict=False):
            chosen[want.holder] = f"{ipaddress.ip_address(start)}/{pool.subnet_prefixlen}"
    return chosen


def _intervals(values: Iterable[str]) -> list[Interval]:
    """Leased addresses and subnets as intervals of integers."""
    out = []
    for value in values:
        net = ipaddress.ip_network(value, strict=False)
        out.append((int(net.network_address), int(net.broadcast_address)))
    return out


def _first(values: Iterable[int], count: int) -> list[int]:
    picks: list[int] = []
    for value in values:
        if len(picks) == count:
            break
        picks.append(value)
    return picks


def _normal(text: str, what: What) -> str:
    return str(ipaddress.ip_network(text, strict=True)) if what == "subnet" else str(ipaddress.ip_address(text))


def _explicit_problem(pool: PoolSpec, want: Want, by_value: dict[str, Holder]) -> str | None:
    """Why ``want.explicit`` cannot be had from ``pool``, or None."""
    text = want.explicit or ""
    where = f"{want.holder.address}: {text!r}"
    try:
        value = ipaddress.ip_network(text, strict=True) if want.what == "subnet" else ipaddress.ip_address(text)
    except ValueError:
        return f"{where} is not an {'subnet' if want.what == 'subnet' else 'address'}"
    if value.version != pool.family:
        return (f"{where} is an IPv{value.version} value, and pool {pool.name!r} is IPv{pool.family} "
                f"({pool.network}): use an IPv{pool.family} value or another pool")
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        if pool.subnet_prefixlen is not None and value.prefixlen != pool.subnet_prefixlen:
            return f"{where}: pool {pool.name!r} carves /{pool.subnet_prefixlen} subnets, not /{value.prefixlen}"
        first, last = int(value.network_address), int(value.broadcast_address)
    else:
        first = last = int(value)
    space = pool.space(want.what)
    if not (space.first <= first and last <= space.last):
        return f"{where} is outside pool {pool.name!r} ({pool.network}): choose a value inside it, or none"
    if any(space.is_blocked(n) for n in (first, last)) or any(a <= last and first <= b for a, b in space.blocked):
        return f"{where} is reserved in pool {pool.name!r}: choose another value, or none"
    for leased, holder in by_value.items():
        a, b = _intervals([leased])[0]
        if a <= last and first <= b and holder != want.holder:
            return (f"{where} is leased from pool {pool.name!r} already, to {holder}: choose another value, or "
                    "none for the next free one")
    return None


def _exhausted(pool: PoolSpec, what: What, size: int, holders: Iterable[Holder], wanting: Sequence[Want]) -> str:
    """The message for a pool with too few free values: its size, who holds its leases, who asks for more."""
    by_stack = Counter(h.stack for h in holders)
    held = ", ".join(f"{n} by stack {s}" for s, n in sorted(by_stack.items())) or "none"
    asking = ", ".join(w.holder.address for w in wanting[:5]) + (" …" if len(wanting) > 5 else "")
    noun = "addresses" if what == "address" else f"/{pool.subnet_prefixlen} subnets"
    return (f"pool {pool.name!r} ({pool.network}) is exhausted: it has {size} {noun}, leased {held}; "
            f"{len(wanting)} more wanted ({asking}). Widen the pool, or free leases (crane ipam list {pool.name})")


def _same(text: str, value: str, what: What) -> bool:
    try:
        return _normal(text, what) == value
    except ValueError:
        return False
