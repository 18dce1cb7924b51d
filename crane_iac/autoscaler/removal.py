"""Which web servers a scale-in removes: those with the fewest sessions in flight, the newest first among equals.

Pure. The tier's servers come oldest first (the order the app domain lists its members in); the session counts are
HAProxy's current sessions per server (``scur``), absent when the balancer could not be read, in which case every
server counts as idle and the newest go. The chosen servers are then drained by the balancer before they are
destroyed, so the choice only makes the drain short, never unsafe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crane_iac.scaling import TierHost


@dataclass(frozen=True, slots=True)
class Removal:
    """The servers to remove, the members that stay (oldest first), and a sentence saying why those."""

    removed: tuple[TierHost, ...]
    kept: tuple[TierHost, ...]
    reason: str
    #: the removed servers are the newest (the tail), which the tier's smaller size alone already drops
    newest: bool


def choose(hosts: Sequence[TierHost], sessions: Mapping[str, int] | None, count: int) -> Removal:
    """The ``count`` servers of ``hosts`` (oldest first) to remove: fewest sessions, then newest."""
    position = {h.physical: i for i, h in enumerate(hosts)}
    counts = sessions or {}
    ranked = sorted(hosts, key=lambda h: (counts.get(h.physical, 0), -position[h.physical]))
    removed = tuple(sorted(ranked[:max(count, 0)], key=lambda h: position[h.physical]))
    kept = tuple(h for h in hosts if h not in removed)
    if not removed:
        return Removal((), kept, "", True)
    names = ", ".join(h.physical for h in removed)
    if sessions is None:
        why = f"removes {names}: the newest (the balancer's sessions could not be read)"
    else:
        others = ", ".join(f"{h.physical} {counts.get(h.physical, 0)}" for h in kept)
        mine = [counts.get(h.physical, 0) for h in removed]
        why = (f"removes {names} ({', '.join(map(str, mine))} session{'' if mine == [1] else 's'}; "
               f"{others or 'none left'}): fewest sessions, newest first")
    return Removal(removed, kept, why, removed == tuple(hosts[len(kept):]))
