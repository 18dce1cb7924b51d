"""Match what the hypervisor has to addresses: by state, by owner metadata, by recorded intents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from crane_iac.errors import Diagnostic
from crane_iac.objects import DEFAULT_ENDPOINT, Desired, Live, Outcome, Recorded, identity, retired_from
from crane_iac.planner.diff import resolve_outputs
from crane_iac.resources.messages import with_article
from crane_iac.sharing import NOTHING_SHARED, EndpointSharing
from crane_iac.state.base import Committed, StackState


@dataclass
class RefreshReport:
    """What ``crane refresh`` wrote: the records, how many resources state held, and the outputs that changed."""

    committed: list[Committed]
    resources: int
    outputs_changed: list[str]


class EndpointRead(Protocol):
    """What matching needs to know of an endpoint's last ``read_all`` beyond the objects it returned (an
    ``Endpoint`` answers both)."""

    def listed(self, kind: str, properties: dict[str, Any]) -> bool:
        """Whether the read listed every object like this recorded one (so that its absence means it is gone)."""

    def unreadable(self, kind: str) -> frozenset[str]:
        """The keys of ``kind`` the read cannot report, which state supplies."""


def match_live(
    lives: Iterable[Live], stack: str, state: StackState, desired: Iterable[Desired], imports: Iterable[str] = (),
    endpoints: Mapping[str, EndpointRead] | None = None, sharing: EndpointSharing = NOTHING_SHARED,
) -> tuple[dict[str, Live], list[Diagnostic]]:
    """Live objects of this stack by address (including adopted, imported and orphaned ones), and name conflicts.
    Objects forgotten with `crane state rm` are crane's no longer: neither adopted nor orphaned. ``endpoints`` says
    what each endpoint's read could not see: a recorded object it did not list (a state-only kind: a lease, a
    configuration run; a volume of a stopped pool) is as state recorded it, and the keys it cannot report come from
    state. Without ``endpoints``, every object is listed and every key readable. An object of a kind endpoints share
    (``sharing``), read through each of them, is taken once, on its owner (``one_copy_each``)."""
    desired = list(desired)
    if sharing:
        lives = one_copy_each(lives, sharing, state, desired)
    by_key = {identity(live.kind, live.physical, live.properties, live.endpoint): live for live in lives}
    forgotten = {identity(r.kind, r.physical, r.properties, r.endpoint): r.address for r in state.forgotten}
    matched: dict[str, Live] = {}
    claimed: set[int] = set()

    def take(address: str, live: Live | None) -> None:
        if live is not None and id(live) not in claimed:
            matched[address] = live
            claimed.add(id(live))

    for address, rec in state.resources.items():
        if endpoints is not None and not _listed(endpoints.get(rec.endpoint), rec):
            take(address, Live(rec.kind, rec.physical, rec.properties, rec.outputs, stack, address, rec.endpoint))
            continue
        take(address, by_key.get(identity(rec.kind, rec.physical, rec.properties, rec.endpoint)))
    for key, live in by_key.items():
        if live.owner_stack == stack and live.owner_address and live.owner_address not in matched \
                and key not in forgotten:
            take(live.owner_address, live)
    for address, intent in state.intents.items():
        key = identity(intent.kind, intent.physical, intent.properties, intent.endpoint)
        found = by_key.get(key)
        if found is not None and found.owner_stack in (None, stack) and key not in forgotten:
            take(deposed(address, found.physical) if address in matched else address, found)
    # an object of this stack whose address another object holds is the other half of a create_before_destroy that
    # a crash interrupted: deposed, and the plan deletes it
    for key, live in by_key.items():
        if live.owner_stack == stack and live.owner_address in matched and id(live) not in claimed \
                and key not in forgotten:
            take(deposed(live.owner_address, live.physical), live)
    # what the hypervisor cannot report (the keys its provider names unreadable: the image a volume was uploaded
    # from, a seed's contents) is what state recorded; any other key the read lacks is missing, and the plan shows
    # it as drift
    if endpoints is not None:
        unreadable: dict[tuple[str, str], frozenset[str]] = {}
        for address, now in matched.items():
            kept = state.resources.get(address)
            if kept is None or kept.properties.keys() <= now.properties.keys():
                continue
            where = (kept.endpoint, kept.kind)
            if where not in unreadable:
                reader = endpoints.get(kept.endpoint)
                unreadable[where] = reader.unreadable(kept.kind) if reader is not None else frozenset()
            filled = {k: v for k, v in kept.properties.items() if k in unreadable[where] and k not in now.properties}
            if filled:
                matched[address] = replace(now, properties={**filled, **now.properties})
    importing = set(imports)
    diagnostics = []
    for want in desired:
        if want.address in matched:
            continue
        key = identity(want.kind, want.physical, want.properties, want.endpoint)
        other = by_key.get(key)
        if other is None:
            continue
        mine = other.owner_stack is None or (other.owner_stack, other.owner_address) == (stack, want.address)
        if want.address in importing and mine and id(other) not in claimed:
            take(want.address, other)
            continue
        diagnostics.append(Diagnostic(_name_taken(want, key, other, state, forgotten.get(key)),
                                      want.file, want.line, want.address))
    return matched, diagnostics


def one_copy_each(lives: Iterable[Live], sharing: EndpointSharing, state: StackState,
                  desired: Iterable[Desired]) -> list[Live]:
    """``lives`` with each object of a shared kind (a libvirt network read through qemu:///system and again through
    lxc:///system) once, tagged with the endpoint that owns it: where state records it (or forgot it), else where
    an interrupted create or the stack puts it, else the first of its endpoints by name. Its other copies are the
    same object seen again: matched, they would be taken for a second object of the stack's, and deleted."""
    owners: dict[tuple[str, ...], str] = {}

    def owns(kind: str, physical: str, properties: dict[str, Any], endpoint: str) -> None:
        peers = sharing.peers(endpoint, kind)
        if len(peers) > 1:
            owners.setdefault(identity(kind, physical, properties, min(peers)), endpoint)

    for rec in (*state.resources.values(), *state.forgotten):
        owns(rec.kind, rec.physical, rec.properties, rec.endpoint)
    for intent in state.intents.values():
        owns(intent.kind, intent.physical, intent.properties, intent.endpoint)
    for want in desired:
        owns(want.kind, want.physical, want.properties, want.endpoint)
    kept = []
    for live in lives:
        peers = sharing.peers(live.endpoint, live.kind)
        if len(peers) == 1 or live.endpoint == owners.get(
                identity(live.kind, live.physical, live.properties, min(peers)), min(peers)):
            kept.append(live)
    return kept


def _listed(reader: EndpointRead | None, rec: Recorded) -> bool:
    """Whether the read of the record's endpoint listed every object like it (none of an endpoint not opened)."""
    return reader is not None and reader.listed(rec.kind, rec.properties)


def _name_taken(want: Desired, key: tuple[str, ...], other: Live, state: StackState,
                forgotten: str | None) -> str:
    """Why ``want`` cannot have its name on its endpoint, and the ways out, in whole sentences."""
    exists = f"{with_article(want.kind)} named {want.physical!r} already exists on {_where(want.endpoint)}"
    elsewhere = next((a for a, r in state.resources.items() if a != want.address
                      and identity(r.kind, r.physical, r.properties, r.endpoint) == key), None)
    if elsewhere is not None:  # a `crane state mv` the stack has not followed (the object's own metadata is stale)
        return (f"{exists}: state records it at {elsewhere} (a `crane state mv`?), but the stack still declares "
                f"it as {want.address}. Declare it as {elsewhere} in the stack (it keeps its name "
                f"{want.physical!r}), or move the record back with `crane state mv {elsewhere} {want.address}` "
                f"(or moved(from_={elsewhere!r}, to=...) in the stack).")
    if forgotten is not None:
        return (f"{exists}: `crane state rm` removed it from crane's state (it was {forgotten}). Manage it again "
                f"with `crane import {want.address}`, or rename this resource, or remove the existing one.")
    if other.owner_stack:
        return (f"{exists}: it belongs to {other.owner_address} of stack {other.owner_stack!r}. Rename this "
                "resource, or remove the existing one.")
    return (f"{exists}, and crane did not create it. Adopt it with `crane import {want.address}` (or "
            "import_(to=...) in the stack), or rename this resource, or remove the existing one.")


def deposed(address: str, physical: str) -> str:
    """The address a deposed object is planned under: its owner's, marked with its own name."""
    return f"{address}#deposed:{physical}"


def _where(endpoint: str) -> str:
    return "the hypervisor" if endpoint == DEFAULT_ENDPOINT else f"endpoint {endpoint!r}"


def refreshed_records(lives: Iterable[Live], stack: str, state: StackState,
                      endpoints: Mapping[str, EndpointRead] | None = None,
                      sharing: EndpointSharing = NOTHING_SHARED) -> list[Committed]:
    """What `crane refresh` records: live values for recorded resources that changed, and forgets those gone. A
    record on an endpoint's former type (engine/retired.py) stays recorded on the endpoint, as it was made."""
    live, _ = match_live(lives, stack, state, [], endpoints=endpoints, sharing=sharing)
    committed = []
    for address, rec in state.resources.items():
        now = live.get(address)
        if now is None:
            committed.append(Committed(address, Outcome.FORGET, None, rec.properties))
        elif now.properties != rec.properties or now.outputs != rec.outputs:
            former = retired_from(rec.endpoint)
            committed.append(Committed(address, Outcome.REFRESH, Recorded(
                address, rec.kind, rec.physical, now.properties, now.outputs, rec.dependencies, rec.protect,
                former[0] if former is not None else rec.endpoint, rec.endpoint_config),
                rec.properties))
    return committed


def refreshed_outputs(declared: dict[str, Any], state: StackState, committed: list[Committed]) -> dict[str, Any]:
    """The stack's outputs from refreshed records, as a no-op apply would record them."""
    outputs = {a: r.outputs for a, r in state.resources.items()}
    for c in committed:
        if c.record is None:
            outputs.pop(c.address, None)
        else:
            outputs[c.address] = c.record.outputs
    return {k: resolve_outputs(v, outputs, keep_unknown=False) for k, v in declared.items()}
