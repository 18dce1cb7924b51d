"""One autoscaling period: a web tier's utilisation samples → its next size, the rule that chose it, and why.

Pure: values in, values out. No clock, no I/O, no globals: the loop passes ``now`` and carries ``History`` from one
period to the next (the same trace always gives the same decisions, and a restarted loop that kept its History
carries on). Kubernetes' HPA is the model (its replica calculator and its scale-down stabilisation window).

Readings. A host that started less than ``warmup`` ago is *warming up* and left out. Of every other host, its newest
sample is *fresh* (taken within ``stale_after`` of now), *stale* (older, or older than the host itself: a replaced
host's predecessor), *late* (stamped more than ``SKEW`` seconds after now: a clock running ahead, or a sample of a
period after the one being decided; never trusted, so the host counts as unread) or *missing* (none, or a value
that is not a number ≥ 0). The tier's average is over its fresh samples. A host without a fresh sample (warming,
stale, late, missing) counts *against* a change, as in the HPA: idle (0) when checking a scale-out, full (1) when
checking a scale-in; both the fresh average and this pessimistic one must cross a threshold to act.

Rules, in this order (``Rule``; "above" and "below" are strict):
  clamped          size outside [min, max] (the user moved the range): moved into it, before anything else
  converging       the tier has not as many hosts as its size (an apply is on its way): hold
  no-samples       no fresh sample: hold
  scale-out        above ``upper``: to ceil(N × avg / upper) servers, N × avg being the tier's load with unread hosts
                   at 0; at least N + ``step``, at most N + ``max_step`` and ``max``. No cooldown: the new hosts
                   count as idle while they warm up, so the same load does not scale the tier out twice
  at-max           above upper at ``max``: hold
  unconfirmed      the fresh average crosses a threshold, the pessimistic one does not: hold. So a few high
                   fresh samples may scale out (if they are high enough to carry the unread hosts at 0) but too
                   few low ones never scale in
  too-few-samples  below ``lower`` with fewer fresh samples than ``min_fresh`` × the warmed-up hosts: never scale in
  at-min           below lower at max(min, 1): the autoscaler never removes the last server
  projected        below lower, but the projected average without one server, (load + unread) / (N − 1), would
                   not be below upper: removing it would trigger the next scale-out
  cooldown         below lower less than ``cooldown`` after the last action (either way): hold
  stabilising      below lower, but a period of the last ``stabilisation`` seconds asked for the current size or
                   more, or the history does not cover that window yet: hold (each period records the size its
                   reading alone asks for; a scale-in goes to the highest of them, by one server at most)
  scale-in         below lower past all of these: one server fewer
  in-range         within [lower, upper]: hold
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from crane_iac.autoscaler.policy import ScalingPolicy

#: seconds a sample may be stamped after ``now`` (the hosts' clocks against the loop's) and still count
SKEW = 2.0


class Direction(StrEnum):
    """Which way a decision moves the tier's size."""

    OUT = "out"
    IN = "in"
    HOLD = "hold"


class Rule(StrEnum):
    """Why a period decided what it did: the closed set of outcomes (see the module's docstring)."""

    CLAMPED = "clamped"
    CONVERGING = "converging"
    NO_SAMPLES = "no-samples"
    SCALE_OUT = "scale-out"
    AT_MAX = "at-max"
    UNCONFIRMED = "unconfirmed"
    TOO_FEW_SAMPLES = "too-few-samples"
    AT_MIN = "at-min"
    PROJECTED = "projected"
    COOLDOWN = "cooldown"
    STABILISING = "stabilising"
    SCALE_IN = "scale-in"
    IN_RANGE = "in-range"


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

    @property
    def unread(self) -> int:
        return self.warming + self.stale + self.late + self.missing


@dataclass(frozen=True, slots=True)
class History:
    """What the decision keeps between periods: the last action (its time and direction) and the recommendations
    of the stabilisation window, oldest first, with the one in force at the window's start."""

    last_action_at: float | None = None
    last_direction: Direction | None = None
    recommendations: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The tier's next size, the direction, the rule that chose it and a sentence with the numbers, for the
    state history."""

    size: int
    direction: Direction
    rule: Rule
    reason: str
    reading: Reading


def decide(policy: ScalingPolicy, *, size: int, min: int, max: int, hosts: Sequence[Host],
           samples: Iterable[Sample], now: float, history: History) -> tuple[Decision, History]:
    """Decide one period for a tier at ``size`` within [``min``, ``max``] (a loaded WebTier's, so min ≤ max).

    The History returned is the one that holds if the decision is carried out; the loop keeps it for the next
    period."""
    if not min <= size <= max:
        target = min if size < min else max
        way = Direction.OUT if target > size else Direction.IN
        reason = f"size {size} is outside [min {min}, max {max}]: {size} → {target}"
        reading = Reading(average=None, fresh=0)
        return (Decision(target, way, Rule.CLAMPED, reason, reading),
                History(now, way, _window(history.recommendations, now, target, policy.stabilisation)))
    reading, load = _read(policy, hosts, samples, now)
    recommendation, rule, reason = _recommend(policy, size, min, max, len(hosts), reading, load)
    window = _window(history.recommendations, now, recommendation, policy.stabilisation)
    target = recommendation
    if rule is Rule.SCALE_IN:
        rule, reason, target = _hold_back(policy, size, now, history, window, reason)
    if target == size:
        return Decision(size, Direction.HOLD, rule, reason, reading), \
            History(history.last_action_at, history.last_direction, window)
    way = Direction.OUT if target > size else Direction.IN
    return Decision(target, way, rule, reason, reading), History(now, way, window)


def _read(policy: ScalingPolicy, hosts: Sequence[Host], samples: Iterable[Sample],
          now: float) -> tuple[Reading, float]:
    """Count every host as warming, fresh, stale, late or missing; and the load: the sum of fresh utilisations."""
    newest: dict[str, Sample] = {}
    ahead: set[str] = set()
    horizon = now + SKEW
    for sample in samples:
        if sample.at > horizon:
            ahead.add(sample.host)
            continue
        seen = newest.get(sample.host)
        if seen is None or sample.at > seen.at:
            newest[sample.host] = sample
    warm_from, fresh_from = now - policy.warmup, now - policy.stale_after
    fresh = warming = stale = late = missing = 0
    load = 0.0
    for host in hosts:
        if host.started_at > warm_from:
            warming += 1
            continue
        last = newest.get(host.name)
        if last is None:
            if host.name in ahead:
                late += 1
            else:
                missing += 1
        elif last.at < fresh_from or last.at < host.started_at:
            stale += 1
        else:
            value = policy.utilisation(last.value)
            if 0.0 <= value < math.inf:  # NaN fails this too
                fresh += 1
                load += value
            else:
                missing += 1
    average = load / fresh if fresh else None
    return Reading(average, fresh, warming, stale, late, missing), load


def _recommend(policy: ScalingPolicy, size: int, min: int, max: int, count: int,
               reading: Reading, load: float) -> tuple[int, Rule, str]:
    """The size this period's reading alone asks for, the rule and the reason (scale-in before the time rules)."""
    if count != size:
        return size, Rule.CONVERGING, f"the tier has {_servers(count)} for size {size}: an apply is converging it"
    seen = _seen(policy, reading, size)
    if reading.average is None:
        return size, Rule.NO_SAMPLES, f"{seen}: hold at {size}"
    average, unread = reading.average, reading.unread
    if average > policy.upper:
        above = f"{seen} is above upper {policy.upper:.2f}"
        if size >= max:
            return size, Rule.AT_MAX, f"{above}, but size {size} is max: hold"
        idle = load / size
        if idle <= policy.upper:
            return size, Rule.UNCONFIRMED, (f"{above}, but not with the {_servers(unread)} without a fresh sample "
                                            f"counted idle ({idle:.2f}): hold")
        wanted = math.ceil(load / policy.upper - 1e-9)
        target = _bounded(wanted, size + policy.step, size + policy.max_step, max)
        return target, Rule.SCALE_OUT, (f"{above}: scale out {size} → {target} (ceil({size} × {idle:.2f} / "
                                        f"{policy.upper:.2f}) = {wanted}; step {policy.step}, max_step "
                                        f"{policy.max_step}, max {max})")
    if average >= policy.lower:
        return size, Rule.IN_RANGE, f"{seen} is within [lower {policy.lower:.2f}, upper {policy.upper:.2f}]: hold"
    below = f"{seen} is below lower {policy.lower:.2f}"
    warmed = size - reading.warming
    needed = _at_least_one(math.ceil(policy.min_fresh * warmed - 1e-9))
    if reading.fresh < needed:
        return size, Rule.TOO_FEW_SAMPLES, (f"{below}, but a scale-in needs {needed} fresh samples (min_fresh "
                                            f"{policy.min_fresh:g} of {_servers(warmed)} warmed up): hold")
    full = (load + unread) / size
    if full >= policy.lower:
        return size, Rule.UNCONFIRMED, (f"{below}, but not with the {_servers(unread)} without a fresh sample "
                                        f"counted full ({full:.2f}): hold")
    floor = min if min > 1 else 1
    if size <= floor:
        return size, Rule.AT_MIN, f"{below}, but size {size} is the floor (min {min}, never the last server): hold"
    projected = (load + unread) / (size - 1)
    if projected >= policy.upper:
        return size, Rule.PROJECTED, (f"{below}, but without one server the average would be {projected:.2f}, "
                                      f"not below upper {policy.upper:.2f}: hold")
    return size - 1, Rule.SCALE_IN, f"{below} ({projected:.2f} without one server, below upper {policy.upper:.2f})"


def _hold_back(policy: ScalingPolicy, size: int, now: float, history: History,
               window: tuple[tuple[float, int], ...], why: str) -> tuple[Rule, str, int]:
    """Cooldown, then stabilisation, for a scale-in the reading asks for (``why`` says why it does)."""
    if history.last_action_at is not None and now - history.last_action_at < policy.cooldown:
        return Rule.COOLDOWN, (f"{why}; but the last action (scale {history.last_direction}) was "
                               f"{now - history.last_action_at:g} s ago, cooldown {policy.cooldown:g} s: hold"), size
    highest = max(recommended for _, recommended in window)
    if highest >= size:
        return Rule.STABILISING, (f"{why}; but a period of the last {policy.stabilisation:g} s asked for "
                                  f"{_servers(highest)}: hold"), size
    covered = now - window[0][0]
    if covered < policy.stabilisation:
        return Rule.STABILISING, (f"{why}; but the history covers only {covered:g} s of stabilisation "
                                  f"{policy.stabilisation:g} s: hold"), size
    return Rule.SCALE_IN, f"{why} and low for {policy.stabilisation:g} s: scale in {size} → {size - 1}", size - 1


def _window(kept: tuple[tuple[float, int], ...], now: float, recommendation: int,
            span: float) -> tuple[tuple[float, int], ...]:
    """The recommendations of the last ``span`` seconds with this period's, and the one in force at the start."""
    start = now - span
    first = 0
    for i, (at, _) in enumerate(kept):
        if at <= start:
            first = i
        else:
            break
    return (*kept[first:], (now, recommendation))


def _seen(policy: ScalingPolicy, reading: Reading, size: int) -> str:
    """``memory average 0.86 over 4 of 5 servers (1 warming up)``: the reading in words."""
    counts = [f"{n} {what}" for n, what in ((reading.warming, "warming up"), (reading.stale, "stale"),
                                            (reading.late, "late"), (reading.missing, "missing")) if n]
    unread = f" ({', '.join(counts)})" if counts else ""
    if reading.average is None:
        return f"no fresh {policy.signal} sample from {_servers(size)}{unread}"
    return f"{policy.signal} average {reading.average:.2f} over {reading.fresh} of {_servers(size)}{unread}"


def _servers(n: int) -> str:
    return f"{n} server" if n == 1 else f"{n} servers"


def _bounded(wanted: int, least: int, most: int, ceiling: int) -> int:
    """``wanted`` within [least, most], then no more than ``ceiling``."""
    bounded = least if wanted < least else most if wanted > most else wanted
    return bounded if bounded < ceiling else ceiling


def _at_least_one(n: int) -> int:
    return n if n > 1 else 1
