"""State surgery: adopting an existing object (`crane import`), forgetting and re-addressing records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crane_iac.addresses import is_within
from crane_iac.errors import CraneError
from crane_iac.loader import LoadedStack
from crane_iac.objects import Live, Outcome, Recorded, identity
from crane_iac.resources.messages import with_article
from crane_iac.state.base import Committed, StackState

if TYPE_CHECKING:
    from crane_iac.planner.model import Plan


@dataclass
class ImportReport:
    """What ``crane import`` adopted, and the plan of that address against the stack."""

    committed: Committed
    plan: Plan


def import_record(address: str, name: str | None, loaded: LoadedStack, state: StackState, lives: Iterable[Live],
                  stack: str) -> Committed:
    """The state record that adopts the live object ``name`` as ``address``. The address must be declared in the
    stack and the object must carry the name the stack gives it (crane derives names from addresses); an object
    that belongs to another stack or resource is refused."""
    desired = {d.address: d for d in loaded.desired}
    want = desired.get(address)
    if want is None:
        raise CraneError(f"{address} is not declared in the stack; declare it first (crane imports into a resource "
                         f"the stack declares), then run `crane import {address}` again")
    if address in state.resources:
        raise CraneError(f"{address} is already in state (as {state.resources[address].physical!r}); "
                         "`crane state rm` it first to import another object")
    key = identity(want.kind, want.physical, want.properties, want.endpoint)
    expected = key[-1]
    if name is not None and name not in (expected, want.physical):  # a pooled object: "pool/name" or "name"
        raise CraneError(f"{address} is named {expected!r} on the hypervisor, not {name!r}: crane names objects "
                         f"after their address, so rename the object or declare the resource with the name it has")
    found = next((live for live in lives
                  if identity(live.kind, live.physical, live.properties, live.endpoint) == key), None)
    if found is None:
        raise CraneError(f"there is no {want.kind} named {expected!r} on the hypervisor to import as {address}")
    if found.owner_stack is not None and (found.owner_stack, found.owner_address) != (stack, address):
        raise CraneError(f"{want.kind} {expected!r} belongs to {found.owner_address} of stack "
                         f"{found.owner_stack!r}; crane will not take it from there")
    other = next((a for a, r in state.resources.items()
                  if identity(r.kind, r.physical, r.properties, r.endpoint) == key), None)
    if other is not None:
        raise CraneError(f"{want.kind} {expected!r} is already managed as {other}")
    record = Recorded(address, want.kind, want.physical, found.properties, found.outputs, want.dependencies,
                      want.protect, want.endpoint)
    return Committed(address, Outcome.IMPORT, record)


def expand_addresses(addresses: Iterable[str], state: StackState) -> list[str]:
    """The recorded addresses within each of ``addresses`` (a component's address names all its children)."""
    found: list[str] = []
    for address in addresses:
        within = sorted(a for a in state.resources if is_within(a, address))
        if not within:
            raise CraneError(f"no resource {address!r} in the state of stack {state.name!r}; see `crane state list`")
        found.extend(a for a in within if a not in found)
    return found


def check_move(old: str, new: str) -> None:
    """A move keeps the resource's kind: ``vm.web`` may become ``vm.frontend`` or ``appdomain.shop/vm.web``."""
    def kind(address: str) -> str:
        return address.rsplit("/", 1)[-1].split(".", 1)[0]

    if "." not in new.rsplit("/", 1)[-1]:
        raise CraneError(f"{new!r} is not an address (kind.name, e.g. vm.web)")
    if kind(old) != kind(new):
        raise CraneError(f"cannot move {old} to {new}: {with_article(kind(old))} stays {with_article(kind(old))}")
