"""Hypothesis drives the lease lifecycle of the state store through random sequences of what runs do: plans that
lease (by two stacks, interleaved), applies that make or delete, `state mv`, `state rm`, plans never applied and
the next apply's reclaim, crashes between a plan and its apply. After every step: no value is leased twice, every
lease belongs to a resource state records or is a planned one, and a recorded resource's value never changes while
it lives. (Eight real processes at once are in test_leases.py.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crane_iac.ipam.pools import Holder, IpamError, Lease, PoolSpec, Want
from crane_iac.objects import Outcome, Recorded
from crane_iac.planner.leases import lease_releases
from crane_iac.state.backends import open_store
from crane_iac.state.base import Committed

POOL = PoolSpec.parse("p", "10.77.0.0/28")  # 14 addresses: small enough to run out
STACKS = ("a", "b")
NAMES = [f"vm.h{i}" for i in range(10)]


class Leasing(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = open_store(f"sqlite:///{Path(self.dir.name) / 'state.db'}")
        #: stack → address → the value it was made with
        self.made: dict[str, dict[str, str]] = {s: {} for s in STACKS}
        #: stack → address → the value its last plan leased (not made yet)
        self.planned: dict[str, dict[str, str]] = {s: {} for s in STACKS}
        self.forgotten: set[tuple[str, str]] = set()

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    def lease(self, stack: str, addresses: list[str]) -> dict[str, str] | None:
        wants = [("p", Want(Holder(stack, a, "nic0"))) for a in addresses]
        try:
            got = self.store.lease(stack, [POOL], wants)
        except IpamError as exc:
            assert "is exhausted" in str(exc)
            return None
        return {h.address: v for (_, h), v in got.items()}

    @rule(stack=st.sampled_from(STACKS), addresses=st.lists(st.sampled_from(NAMES), max_size=5, unique=True))
    def plan(self, stack: str, addresses: list[str]) -> None:
        got = self.lease(stack, addresses)
        if got is None:
            return
        for address, value in got.items():
            if address in self.made[stack]:
                assert value == self.made[stack][address]  # never moves while the resource lives
            else:
                self.planned[stack][address] = value

    @rule(stack=st.sampled_from(STACKS), data=st.data())
    def apply_create(self, stack: str, data: st.DataObject) -> None:
        waiting = sorted(self.planned[stack])
        if not waiting:
            return
        address = data.draw(st.sampled_from(waiting))
        self.store.commit(stack, [Committed(address, Outcome.CREATE, Recorded(address, "vm", address[3:], {}))])
        self.made[stack][address] = self.planned[stack].pop(address)

    @rule(stack=st.sampled_from(STACKS), data=st.data())
    def apply_delete(self, stack: str, data: st.DataObject) -> None:
        if not self.made[stack]:
            return
        address = data.draw(st.sampled_from(sorted(self.made[stack])))
        self.store.commit(stack, [Committed(address, Outcome.DELETE, None, {})])
        del self.made[stack][address]

    @rule(stack=st.sampled_from(STACKS), data=st.data())
    def state_mv(self, stack: str, data: st.DataObject) -> None:
        free = [n for n in NAMES if n not in self.made[stack] and n not in self.planned[stack]]
        if not self.made[stack] or not free:
            return
        old = data.draw(st.sampled_from(sorted(self.made[stack])))
        new = data.draw(st.sampled_from(free))
        self.store.move(stack, [(old, new)])
        self.made[stack][new] = self.made[stack].pop(old)

    @rule(stack=st.sampled_from(STACKS), declared=st.lists(st.sampled_from(NAMES), max_size=10, unique=True))
    def next_apply_reclaims(self, stack: str, declared: list[str]) -> None:
        """An apply of a stack that now declares ``declared``: planned leases of anything else go back (a plan
        never applied, or one whose apply crashed before its create)."""
        keep = set(declared) | set(self.made[stack])
        released = lease_releases(self.store.ip_leases(stack=stack), declared=keep, recorded=set(self.made[stack]),
                                  wanted={("p", a, "nic0") for a in keep})
        self.store.commit(stack, [], released=[Lease(x.pool, x.value, Holder(stack, x.address, x.slot))
                                               for x in released])
        self.planned[stack] = {a: v for a, v in self.planned[stack].items() if a in declared}

    @precondition(lambda self: any(self.made.values()))
    @rule(data=st.data())
    def state_rm_and_release(self, data: st.DataObject) -> None:
        stack = data.draw(st.sampled_from([s for s in STACKS if self.made[s]]))
        address = data.draw(st.sampled_from(sorted(self.made[stack])))
        value = self.made[stack].pop(address)
        self.store.forget(stack, [address])
        try:  # the resource is gone from state: its lease may be given back by hand
            self.store.release_lease("p", value)
        except IpamError:
            raise AssertionError(f"{value} of a forgotten {address} could not be released") from None

    @invariant()
    def no_value_twice_and_every_lease_accounted_for(self) -> None:
        leases = self.store.ip_leases(pool="p")
        values = [x.value for x in leases]
        assert len(values) == len(set(values))
        for x in leases:
            if x.state == "bound":
                assert self.made[x.stack].get(x.address) == x.value, x
            else:
                assert self.planned[x.stack].get(x.address) == x.value, x
        for stack in STACKS:
            held = {x.address: x.value for x in leases if x.stack == stack}
            assert all(held.get(a) == v for a, v in self.made[stack].items())


Leasing.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_the_lease_lifecycle = Leasing.TestCase
