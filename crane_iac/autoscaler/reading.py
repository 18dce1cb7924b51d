"""One period's reading of a web tier (how each host's samples count) and the trend line through recent periods:
what the autoscaler's decision (``decision``) sees before any rule applies.

Pure, as the decision is: values in, values out; the loop passes ``now``.

Readings. A host that started less than ``warmup`` ago is *warming up* and left out. Of every other host, its newest
sample is *fresh* (taken within ``stale_after`` of now), *stale* (older, or older than the host itself: a replaced
host's predecessor), *late* (stamped more than ``SKEW`` seconds after now: a clock running ahead, or a sample of a
period after the one being decided; never trusted, so the host counts as unread) or *missing* (none, or a value
that is not a number ≥ 0). The tier's average is over its fresh samples, and ``hottest`` is the highest of them.
A host without a fresh sample (warming, stale, late, missing) counts *against* a scale-in, as in the HPA: full (1)
when checking one. When checking a scale-out, a stale or late host counts at its newest value (``unfresh_load``,
their sum: a slow or skewed reporter is still serving), while a warming host, a missing one, and a stale one whose
sample is its predecessor's or not a number ≥ 0 count idle (0). Both the fresh average and this pessimistic one
must cross a line to act.

The trend. History keeps each period's fresh average with the number of warmed-up hosts it was taken over. A
least-squares line through this period's and the earlier ones of the last ``trend`` seconds taken over as many
warmed-up hosts (at least ``MIN_POINTS``, so that one period cannot make a line; a scale-out that took effect starts
a new one) gives the tier's *level* (the line now) and, projected ``warmup`` ahead (when a server started now would
count), its *projection*. There is no line while hosts warm up: the scale-out on its way was sized for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crane_iac.autoscaler.policy import ScalingPolicy

#: seconds a sample may be stamped after ``now`` (the hosts' clocks against the loop's) and still count
SKEW = 2.0
#: periods a trend line needs (this one included) before it may scale the tier out
MIN_POINTS = 8


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of ``host``'s signal (memory or CPU as a fraction, or sessions per second) taken at ``at``."""

    host: str
    value: float
    at: float


@dataclass(frozen=True, slots=True)
class Host:
    """A web server of the tier, and when it (this incarnation of it) started."""

    name: str
    started_at: float


@dataclass(frozen=True, slots=True)
class Reading:
    """What one period saw: the fresh average (None without fresh samples) and how every host was counted."""

    average: float | None
    fresh: int
    warming: int = 0
    stale: int = 0
    late: int = 0
    missing: int = 0
    #: the highest fresh utilisation (None without fresh samples)
    hottest: float | None = None
    #: the newest utilisations of the stale and late hosts, summed (those that have one)
    unfresh_load: float = 0.0

    @property
    def unread(self) -> int:
        return self.warming + self.stale + self.late + self.missing


@dataclass(frozen=True, slots=True)
class Trend:
    """The line through a tier's recent averages: its value now, its slope (per second) and how many periods."""

    level: float
    slope: float
    points: int


def read_hosts(policy: ScalingPolicy, hosts: Sequence[Host], samples: Iterable[Sample],
               now: float) -> tuple[Reading, float]:
    """Count every host as warming, fresh, stale, late or missing; and the load: the sum of fresh utilisations."""
    newest: dict[str, Sample] = {}
    ahead: dict[str, Sample] = {}  # stamped after now + SKEW
    horizon = now + SKEW
    for sample in samples:
        kept = ahead if sample.at > horizon else newest
        seen = kept.get(sample.host)
        if seen is None or sample.at > seen.at:
            kept[sample.host] = sample
    warm_from, fresh_from = now - policy.warmup, now - policy.stale_after
    fresh = warming = stale = late = missing = 0
    load = unfresh = 0.0
    hottest: float | None = None
    for host in hosts:
        if host.started_at > warm_from:
            warming += 1
            continue
        last = newest.get(host.name)
        if last is None:
            if host.name in ahead:
                late += 1
                unfresh += _usable(policy, ahead[host.name].value) or 0.0
            else:
                missing += 1
        elif last.at < host.started_at:  # its predecessor's
            stale += 1
        elif last.at < fresh_from:
            stale += 1
            unfresh += _usable(policy, last.value) or 0.0
        else:
            value = _usable(policy, last.value)
            if value is not None:
                fresh += 1
                load += value
                if hottest is None or value > hottest:
                    hottest = value
            else:
                missing += 1
    average = load / fresh if fresh else None
    return Reading(average, fresh, warming, stale, late, missing, hottest, unfresh), load


def _usable(policy: ScalingPolicy, value: float) -> float | None:
    """A sample's value as a utilisation, or None where it is not a number ≥ 0 (NaN fails the test too)."""
    used = policy.utilisation(value)
    return used if 0.0 <= used < math.inf else None


def trend_window(kept: tuple[tuple[float, float, int], ...], now: float, reading: Reading, size: int, count: int,
                 span: float) -> tuple[tuple[float, float, int], ...]:
    """The trend window's readings with this period's: those of the last ``span`` seconds over as many warmed-up
    hosts as now (none while the tier converges; a period without a fresh sample adds none)."""
    if count != size or span <= 0:
        return ()
    warmed, start = size - reading.warming, now - span
    if reading.average is None:
        return tuple(r for r in kept if r[0] > start)
    return (*(r for r in kept if r[0] > start and r[2] == warmed), (now, reading.average, warmed))


def fit_trend(readings: tuple[tuple[float, float, int], ...], now: float) -> Trend | None:
    """The least-squares line through ``readings`` (at least MIN_POINTS of them), or None."""
    n = len(readings)
    if n < MIN_POINTS:
        return None
    mean_at = sum(at for at, _, _ in readings) / n
    mean = sum(value for _, value, _ in readings) / n
    spread = sum((at - mean_at) ** 2 for at, _, _ in readings)
    if spread <= 0.0:
        return None
    slope = sum((at - mean_at) * (value - mean) for at, value, _ in readings) / spread
    return Trend(mean + slope * (now - mean_at), slope, n)
