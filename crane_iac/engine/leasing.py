"""What address pools lease to a stack, seen from the engine: reading a stack's leases with its state, leasing the
values a stack run took as stand-ins (and running it again with them), keeping a moved resource's values, and
giving one back by hand. (Which leases an apply gives back is the plan's: crane_iac/planner/leases.py.)

A stack run that takes a value from a pool without a lease gets a stand-in (resources/ippools.py); ``settle``
leases the real values in one transaction of the state store (which writes them as planned) and runs the stack
again with them. A network's own addresses wait for its subnet, so a stack that takes both settles in two rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from crane_iac.errors import CraneError
from crane_iac.ipam.pools import Holder, IpamError, LeaseRecord, PoolSpec, Want
from crane_iac.state.base import StateStore

if TYPE_CHECKING:
    from crane_iac.loader import LoadedStack

#: (pool, resource address, field) → value
Leases = dict[tuple[str, str, str], str]


def values_of(records: Iterable[LeaseRecord]) -> Leases:
    """What the pools lease to a stack's resources, from its lease records."""
    return {(x.pool, x.address, x.slot): x.value for x in records}


def follow_moves(loaded: LoadedStack, leases: Leases, recorded: Collection[str]) -> Leases | None:
    """``leases`` with a moved resource's under its new address too (``moved()``), or None when none moved. Only a
    recorded resource moves (the apply moves its record and its leases together); the planned lease of one never
    made stays where it is, and the resource at the new address leases its own (else it would take a value whose
    lease the apply gives back as unused)."""
    if not loaded.moves or not leases:
        return None
    renamed = {old: new for old, new in loaded.moves if old in recorded}
    moved = {(pool, renamed[a], slot): v for (pool, a, slot), v in leases.items() if a in renamed}
    return {**leases, **moved} if moved else None


def settle(loaded: LoadedStack, store: StateStore, stack: str, known: Leases,
           run: Callable[[Leases], LoadedStack]) -> tuple[LoadedStack, Leases]:
    """``loaded`` with no stand-in left, and the leases it holds: while a value is a stand-in, lease what has no
    lease yet and ``run`` the stack again with every value."""
    for _ in range(3):
        if not loaded.provisional:
            return loaded, known
        wants = [(w.pool, Want(Holder(stack, w.address, w.slot), w.what, w.explicit)) for w in loaded.lease_wants
                 if known.get((w.pool, w.address, w.slot)) is None
                 or w.explicit not in (None, known[w.pool, w.address, w.slot])]
        named = {pool for pool, _ in wants}
        if wants:
            got = store.lease(stack, [p for p in loaded.pools if p.name in named], wants, parents=loaded.pool_parents)
            known = {**known, **{(pool, h.address, h.slot): value for (pool, h), value in got.items()}}
        known = _lease_deferred(loaded, store, stack, known)
        # the usual first plan leases what stood in: the stack need not run again (the loader checks the rest)
        from crane_iac.loader import with_leases  # imported by the run that gave ``loaded``

        again = with_leases(loaded, known)
        loaded = again if again is not None else run(known)
    raise CraneError("the stack's address pools did not settle after three rounds of leasing: a value taken from a "
                     "pool decides which pool another comes from; report this as a bug")


def _lease_deferred(loaded: LoadedStack, store: StateStore, stack: str, known: Leases) -> Leases:
    """``known`` with the addresses taken from networks whose subnet was a stand-in leased too, now that the
    subnets are: one round fewer of running the stack."""
    specs: dict[str, PoolSpec] = {}
    parents: dict[str, str] = {}
    wants: list[tuple[str, Want]] = []
    for d in loaded.deferred_wants:
        subnet = known.get((d.parent, d.network, d.field))
        if subnet is None:  # its subnet is not leased yet: a later round takes it
            continue
        # imported here: the resource models are imported while the endpoints connect, not before
        from crane_iac.resources.ippools import network_pool

        pool = network_pool(d.parent, subnet).pool
        specs[pool.name], parents[pool.name] = pool, d.parent
        if known.get((pool.name, d.address, d.slot)) is None:
            wants.append((pool.name, Want(Holder(stack, d.address, d.slot), "address", d.explicit_in(subnet))))
    if not wants:
        return known
    got = store.lease(stack, list(specs.values()), wants, parents=parents)
    return {**known, **{(pool, h.address, h.slot): value for (pool, h), value in got.items()}}


def release(store: StateStore, value: str, pool: str | None) -> LeaseRecord:
    """Give back the lease of ``value`` (``crane ipam release``); ``pool`` may be left out when one pool holds it."""
    if pool is None:
        holding = sorted({lease.pool for lease in store.ip_leases() if lease.value == value})
        if not holding:
            raise IpamError(f"no pool has a lease of {value}; see `crane ipam list`")
        if len(holding) > 1:
            raise IpamError(f"{value} is leased from {', '.join(holding)}: name one with --pool")
        pool = holding[0]
    return store.release_lease(pool, value)
