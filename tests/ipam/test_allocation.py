"""The allocator on its own: pools as a stack declares them, the values they hand out and every refusal, and a
property-based run over random sequences of requests and releases (no value twice, a holder keeps its value,
reserved values never handed out, the lowest free first)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crane_iac.ipam.pools import Holder, IpamError, Lease, PoolSpec, Want, allocate
from crane_iac.ipam.space import Space, merged


def h(address: str, slot: str = "nic0", stack: str = "main") -> Holder:
    return Holder(stack, address, slot)


def test_a_pool_is_parsed_with_every_mistake_named() -> None:
    pool = PoolSpec.parse("front", "10.0.0.0/24", reserved=["10.0.0.1", "10.0.0.128/25"], family=4)
    assert pool.space().size == 254 - 1 - 127  # less network, broadcast, .1 and the upper half (broadcast in it)
    for args, kwargs, message in [
        (("p", "10.0.0.1/24"), {}, "'10.0.0.1/24' is not a network in CIDR form"),
        (("p", "fd00::/48"), {"family": 4}, "'fd00::/48' is an IPv6 network; an IPv4 pool needs an IPv4 prefix"),
        (("p", "10.0.0.0/24"), {"reserved": ["10.0.1.5"]}, "reserved '10.0.1.5' is outside the pool's 10.0.0.0/24"),
        (("p", "10.0.0.0/24"), {"reserved": ["x"]}, "reserved 'x' is not an address or a network"),
        (("p", "fd00::/48"), {"subnet_prefixlen": 40}, "it cannot carve /40 subnets from fd00::/48: use a prefix "
                                                       "length from /48 to /128"),
    ]:
        with pytest.raises(IpamError, match=re.escape(f"pool 'p': {message}")):
            PoolSpec.parse(*args, **kwargs)


def test_addresses_are_the_lowest_free_and_a_holder_keeps_its_own() -> None:
    pool = PoolSpec.parse("front", "10.0.0.0/29", reserved=["10.0.0.1"])
    first = allocate(pool, [], [Want(h("vm.a")), Want(h("vm.b"))])
    assert first == {h("vm.a"): "10.0.0.2", h("vm.b"): "10.0.0.3"}
    leases = [Lease("front", v, k) for k, v in first.items()]
    # vm.a goes, vm.c comes: vm.b keeps .3, vm.c takes the lowest free (.2, released), whatever the order asked
    kept = [lease for lease in leases if lease.holder != h("vm.a")]
    assert allocate(pool, kept, [Want(h("vm.c")), Want(h("vm.b"))]) == {h("vm.b"): "10.0.0.3", h("vm.c"): "10.0.0.2"}


def test_an_exhausted_pool_says_its_size_who_holds_it_and_what_to_do() -> None:
    pool = PoolSpec.parse("tiny", "10.0.0.0/30")  # .1 and .2
    leases = [Lease("tiny", "10.0.0.1", h("vm.a", stack="web")), Lease("tiny", "10.0.0.2", h("vm.b"))]
    with pytest.raises(IpamError) as caught:
        allocate(pool, leases, [Want(h("vm.c"))])
    assert str(caught.value) == ("pool 'tiny' (10.0.0.0/30) is exhausted: it has 2 addresses, leased 1 by stack "
                                 "main, 1 by stack web; 1 more wanted (vm.c). Widen the pool, or free leases "
                                 "(crane ipam list tiny)")


def test_an_explicit_value_is_checked_against_the_pool() -> None:
    pool = PoolSpec.parse("front", "10.0.0.0/24", reserved=["10.0.0.1"])
    leases = [Lease("front", "10.0.0.9", h("vm.a", stack="web"))]
    assert allocate(pool, leases, [Want(h("vm.b"), explicit="10.0.0.10")]) == {h("vm.b"): "10.0.0.10"}
    for explicit, message in [
        ("10.0.1.10", "'10.0.1.10' is outside pool 'front' (10.0.0.0/24)"),
        ("10.0.0.1", "'10.0.0.1' is reserved in pool 'front'"),
        ("10.0.0.0", "'10.0.0.0' is reserved in pool 'front'"),  # the network address
        ("10.0.0.9", "'10.0.0.9' is leased from pool 'front' already, to vm.a (nic0) in stack web"),
        ("fd00::9", "'fd00::9' is an IPv6 value, and pool 'front' is IPv4 (10.0.0.0/24)"),
        ("ten", "'ten' is not an address"),
    ]:
        with pytest.raises(IpamError, match="^" + re.escape(f"vm.b: {message}")):
            allocate(pool, leases, [Want(h("vm.b"), explicit=explicit)])


def test_subnets_are_carved_aligned_around_what_is_leased() -> None:
    pool = PoolSpec.parse("six", "fd00:1::/48", subnet_prefixlen=64, reserved=["fd00:1::/64"], family=6)
    leases = [Lease("six", "fd00:1:0:2::/64", h("network.b", "subnet"))]
    got = allocate(pool, leases, [Want(h("network.a", "subnet"), "subnet"), Want(h("network.c", "subnet"),
                                                                                  "subnet")])
    assert got == {h("network.a", "subnet"): "fd00:1:0:1::/64", h("network.c", "subnet"): "fd00:1:0:3::/64"}
    with pytest.raises(IpamError, match="carves /64 subnets, not /56"):
        allocate(pool, leases, [Want(h("network.d", "subnet"), "subnet", explicit="fd00:1:0:100::/56")])
    with pytest.raises(IpamError, match="pool 'v4' carves no subnets"):
        allocate(PoolSpec.parse("v4", "10.0.0.0/16"), [], [Want(h("network.x", "subnet"), "subnet")])
    with pytest.raises(IpamError, match=r"it has 3 /64 subnets, leased 1 by stack main; 3 more wanted"):
        small = PoolSpec.parse("six", "fd00:1::/62", subnet_prefixlen=64, reserved=["fd00:1::/64"])
        allocate(small, leases, [Want(h(f"network.n{i}", "subnet"), "subnet") for i in range(3)])


def test_an_ipv6_pool_of_addresses_is_swept_not_listed() -> None:
    """A /48 has 2^80 addresses: the first free ones come from one sweep over what is leased."""
    pool = PoolSpec.parse("v6", "fd00:2::/48")
    leases = [Lease("v6", str(ipaddress.IPv6Address("fd00:2::") + i), h(f"vm.l{i}")) for i in range(1, 1001)]
    got = allocate(pool, leases, [Want(h("vm.new"))])
    assert got == {h("vm.new"): "fd00:2::3e9"}


def test_a_space_skips_blocked_intervals_and_finds_aligned_blocks() -> None:
    space = Space.of(0, 31, [(4, 6), (5, 9), (20, 20)])
    assert space.blocked == ((4, 9), (20, 20)) and space.size == 32 - 7
    assert list(space.free([(0, 1)]))[:4] == [2, 3, 10, 11]
    assert list(space.free_blocks(8, [(24, 24)])) == []  # 0-7 meets 4-9, 8-15 too, 16-23 meets 20, 24-31 taken
    assert list(space.free_blocks(4, [])) == [0, 12, 16, 24, 28]
    assert merged([(5, 6), (1, 2), (3, 3)]) == [(1, 3), (5, 6)]


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """Steps of ("want", holders) and ("release", holders) over a small set of holders."""
    names = [f"vm.h{i}" for i in range(12)]
    return draw(st.lists(st.tuples(st.sampled_from(["want", "release"]),
                                   st.lists(st.sampled_from(names), max_size=6, unique=True)), max_size=25))


@settings(max_examples=200, deadline=None)
@given(histories(), st.sampled_from(["10.0.0.0/28", "fd00:3::/124"]), st.booleans())
def test_no_value_twice_and_a_holder_keeps_its_value(steps: list[tuple[str, list[str]]], cidr: str,
                                                    reserve: bool) -> None:
    net = ipaddress.ip_network(cidr)
    reserved = [str(net.network_address + 3), str(net.network_address + 7)] if reserve else []
    pool = PoolSpec.parse("p", cidr, reserved=reserved)
    leases: dict[Holder, str] = {}
    for verb, names in steps:
        holders = [h(n) for n in names]
        if verb == "release":
            for holder in holders:
                leases.pop(holder, None)
            continue
        current = [Lease("p", v, k) for k, v in leases.items()]
        new = [k for k in holders if k not in leases]
        free = pool.space().size - len(leases)
        if len(new) > free:
            with pytest.raises(IpamError, match="is exhausted"):
                allocate(pool, current, [Want(k) for k in holders])
            continue
        got = allocate(pool, current, [Want(k) for k in holders])
        assert set(got) == set(holders)
        for holder in holders:
            if holder in leases:
                assert got[holder] == leases[holder]  # never moves while it is held
        leases.update(got)
        values = list(leases.values())
        assert len(values) == len(set(values))  # never twice
        assert not set(values) & set(reserved)
        assert all(pool.space().contains(int(ipaddress.ip_address(v))) for v in values)
        # the new ones are the lowest free values, in the order asked
        others = {int(ipaddress.ip_address(v)) for k, v in leases.items() if k not in new}
        expected = [v for v in pool.space().free([(o, o) for o in others])][:len(new)]
        assert [int(ipaddress.ip_address(got[k])) for k in new] == expected
