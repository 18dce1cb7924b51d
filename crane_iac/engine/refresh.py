"""Match what the hypervisor has to addresses: by state, by owner metadata, by recorded intents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crane_iac.errors import Diagnostic
from crane_iac.planner.model import Desired, Live, Recorded
from crane_iac.state.base import Committed, StackState


def identity(kind: str, physical: str, properties: dict[str, Any]) -> tuple[str, str]:
    """What names an object uniquely on a host: volumes are unique per pool, the rest per host."""
    if kind == "volume":
        return kind, f"{properties.get('pool', '')}/{physical}"
    return kind, physical


def match_live(
    lives: Iterable[Live], stack: str, state: StackState, desired: Iterable[Desired]
) -> tuple[dict[str, Live], list[Diagnostic]]:
    """Live objects of this stack by address (including adopted and orphaned ones), and name conflicts."""
    by_key = {identity(live.kind, live.physical, live.properties): live for live in lives}
    matched: dict[str, Live] = {}
    claimed: set[int] = set()

    def take(address: str, live: Live | None) -> None:
        if live is not None and id(live) not in claimed:
            matched[address] = live
            claimed.add(id(live))

    for address, rec in state.resources.items():
        take(address, by_key.get(identity(rec.kind, rec.physical, rec.properties)))
    for live in by_key.values():
        if live.owner_stack == stack and live.owner_address and live.owner_address not in matched:
            take(live.owner_address, live)
    for address, intent in state.intents.items():
        if address in matched:
            continue
        found = by_key.get(identity(intent.kind, intent.physical, intent.properties))
        if found is not None and found.owner_stack in (None, stack):
            take(address, found)
    diagnostics = []
    for want in desired:
        if want.address in matched:
            continue
        other = by_key.get(identity(want.kind, want.physical, want.properties))
        if other is not None:
            owner = f"it belongs to {other.owner_address} of stack {other.owner_stack!r}" if other.owner_stack \
                else "crane did not create it"
            diagnostics.append(Diagnostic(
                f"a {want.kind} named {want.physical!r} already exists on the hypervisor and {owner}; "
                "rename this resource or remove the existing one", want.file, want.line, want.address))
    return matched, diagnostics


def refreshed_records(lives: Iterable[Live], stack: str, state: StackState) -> list[Committed]:
    """What `crane refresh` records: live values for recorded resources that changed, and forgets those gone."""
    live, _ = match_live(lives, stack, state, [])
    committed = []
    for address, rec in state.resources.items():
        now = live.get(address)
        if now is None:
            committed.append(Committed(address, "forget", None, rec.properties))
        elif now.properties != rec.properties or now.outputs != rec.outputs:
            committed.append(Committed(address, "refresh", Recorded(
                address, rec.kind, rec.physical, now.properties, now.outputs, rec.dependencies, rec.protect),
                rec.properties))
    return committed
