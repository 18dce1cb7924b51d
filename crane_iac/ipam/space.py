"""An address space as integers: a pool's range, the intervals that are never handed out, and the first free
addresses or aligned blocks (subnets) in what is left. Pure: no I/O, no clock; the state store calls it inside the
transaction that writes the leases it picks, so that a unique constraint, not this module, is what forbids handing
one address out twice.

Every function is linear in the number of intervals and taken values it is given (sorted once), whatever the size
of the space: an IPv6 /48 has 2^80 addresses, and a pool of 10,000 leases is allocated in one sweep.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: an inclusive interval of integers: (first, last)
Interval = tuple[int, int]


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    """``intervals`` sorted, with those that overlap or touch joined."""
    out: list[Interval] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


@dataclass(frozen=True, slots=True)
class Space:
    """The integers ``first``..``last`` less the ``blocked`` intervals (merged, sorted)."""

    first: int
    last: int
    blocked: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, first: int, last: int, blocked: Iterable[Interval] = ()) -> Space:
        inside = [(max(a, first), min(b, last)) for a, b in blocked if b >= first and a <= last]
        return cls(first, last, tuple(merged(inside)))

    @property
    def size(self) -> int:
        """How many integers of the space are not blocked."""
        return self.last - self.first + 1 - sum(b - a + 1 for a, b in self.blocked)

    def is_blocked(self, value: int) -> bool:
        i = bisect.bisect_right(self.blocked, (value, float("inf"))) - 1
        return i >= 0 and self.blocked[i][0] <= value <= self.blocked[i][1]

    def contains(self, value: int) -> bool:
        return self.first <= value <= self.last and not self.is_blocked(value)

    def free(self, taken: Iterable[Interval]) -> Iterator[int]:
        """The space's integers that are neither blocked nor in a ``taken`` interval, lowest first."""
        skip = merged([*self.blocked, *taken])
        value = self.first
        for a, b in skip:
            while value < a and value <= self.last:
                yield value
                value += 1
            value = max(value, b + 1)
        while value <= self.last:
            yield value
            value += 1

    def free_blocks(self, size: int, taken: Iterable[Interval]) -> Iterator[int]:
        """The first integer of each block of ``size`` (a power of two, blocks aligned on it) that lies wholly in the
        space and meets no blocked or ``taken`` interval, lowest first."""
        skip = merged([*self.blocked, *taken])
        start = -(-self.first // size) * size  # the first aligned block at or after first
        i = 0
        while start + size - 1 <= self.last:
            end = start + size - 1
            while i < len(skip) and skip[i][1] < start:
                i += 1
            if i < len(skip) and skip[i][0] <= end:  # meets a skipped interval: jump past it, aligned
                start = -(-(skip[i][1] + 1) // size) * size
                continue
            yield start
            start += size
