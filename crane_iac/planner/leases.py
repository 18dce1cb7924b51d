"""Which of a stack's address-pool leases its apply gives back, decided with the rest of the plan (pure).

A lease is released three ways, each only by an apply: with the applied delete of its resource (the state store
does that in the delete's own transaction), and, listed in the plan as a state-only change, when

* the stack's resource no longer takes the value from the pool (a container given an address on a network
  without a pool, a network whose ``ipv6`` no longer comes from a pool): the resource still exists and uses the
  value until the apply that changes it, so the release waits for that apply to succeed;
* a ``planned`` lease belongs to a resource the stack does not declare and state does not record (a plan never
  applied, an apply stopped before its create), or, for a destroy, to any resource state does not record.

A ``bound`` lease of a resource state no longer records stays: ``crane state rm`` let go of an object that still
exists and uses it (``crane ipam release`` gives it back by hand). Because the list is made from state at each
plan, a crash before the apply's last commit leaves nothing lost: the next plan lists the same releases again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from crane_iac.addresses import is_within
from crane_iac.ipam.pools import LeaseRecord
from crane_iac.planner.model import LeaseRelease

#: why a lease goes, as the plan says it
NOT_TAKEN = "the stack's resource no longer takes it from the pool"
UNUSED = "planned for a resource the stack does not declare and state does not record"
DESTROYED = "planned for a resource that was never made, and the stack is destroyed"


def lease_releases(leases: Sequence[LeaseRecord], *, declared: Collection[str], recorded: Collection[str],
                   wanted: Collection[tuple[str, str, str]], moves: Sequence[tuple[str, str]] = (),
                   targets: Sequence[str] = (), destroy: bool = False) -> list[LeaseRelease]:
    """The leases of one stack (``leases``) that its apply gives back. ``declared``: the stack's resources;
    ``recorded``: state's, after ``moves`` (old → new address: a moved resource's leases follow it); ``wanted``:
    (pool, address, field) the stack takes from pools now; with ``targets``, only leases of resources within them."""
    renamed = dict(moves)
    released = []
    for lease in leases:
        address = renamed.get(lease.address, lease.address)
        if targets and not any(is_within(address, target) for target in targets):
            continue
        if address in recorded:
            if destroy or address not in declared or (lease.pool, address, lease.slot) in wanted:
                continue  # in use, or given back with the resource's applied delete
            why = NOT_TAKEN
        elif lease.state != "planned":
            continue  # a forgotten resource's (`crane state rm`): the object still uses it
        elif destroy:
            why = DESTROYED
        elif address not in declared:
            why = UNUSED
        elif (lease.pool, address, lease.slot) not in wanted:
            why = NOT_TAKEN
        else:
            continue
        released.append(LeaseRelease(lease.pool, lease.value, address, lease.slot, why))
    return released
