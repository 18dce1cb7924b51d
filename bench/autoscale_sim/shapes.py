"""Load shapes for the trace families: each a function of the time (seconds) → requests per second, built from
randomised parameters by ``families``.

A level is said in servers: ``at(level, n)`` is the load at which ``n`` servers of the bench's web tier average
``level`` (base 0.2, 0.004 per req/s: one server carries 150 req/s at upper 0.8), so a shape can sit "one server's
worth" around a line whatever the tier's size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from bench.autoscale_sim.traces import HOUR
from bench.autoscale_sim.web_tier import WebTier

Shape = Callable[[float], float]
MINUTE = 60.0
TIER = WebTier()


def at(level: float, servers: float) -> float:
    """The load at which ``servers`` servers average ``level`` (no noise)."""
    return servers * (level - TIER.base) / TIER.per_request


def steady(load: float) -> Shape:
    return lambda t: load


def ramp(start: float, end: float, begin: float, span: float) -> Shape:
    """``start`` until ``begin``, a straight line to ``end`` over ``span`` seconds, then ``end``."""
    def shape(t: float) -> float:
        if t < begin:
            return start
        if t < begin + span:
            return start + (end - start) * (t - begin) / span
        return end
    return shape


def step(start: float, end: float, when: float) -> Shape:
    return lambda t: start if t < when else end


def flash_crowd(base: float, peak: float, when: float, rise: float, decay: float) -> Shape:
    """``base``; at ``when`` up to ``peak`` within ``rise`` seconds, then back towards base with time constant
    ``decay`` seconds (exponential)."""
    def shape(t: float) -> float:
        if t < when:
            return base
        if t < when + rise:
            return base + (peak - base) * (t - when) / rise
        return base + (peak - base) * math.exp(-(t - when - rise) / decay)
    return shape


def sawtooth(middle: float, swing: float, cycle: float, phase: float) -> Shape:
    """From ``middle - swing`` up to ``middle + swing`` over each ``cycle`` seconds, and straight back down."""
    return lambda t: middle - swing + 2.0 * swing * (((t + phase) / cycle) % 1.0)


def square(middle: float, swing: float, cycle: float, phase: float) -> Shape:
    """``middle + swing`` for the first half of each ``cycle`` seconds, ``middle - swing`` for the second."""
    return lambda t: middle + swing if ((t + phase) / cycle) % 1.0 < 0.5 else middle - swing


def diurnal_weekly(trough: float, peak: float, weekend: float, start_hour: float, peak_hour: float) -> Shape:
    """A day's cosine from ``trough`` at 03:00 to the day's peak at ``peak_hour``, and back by 03:00 the next day;
    the day's peak is ``peak`` on weekdays and ``peak × weekend`` on Saturday and Sunday. ``start_hour`` is the
    trace's first moment in hours since Monday 00:00."""
    def shape(t: float) -> float:
        h = start_hour + t / HOUR
        day, hour = divmod(h - 3.0, 24.0)  # days run from 03:00 (the trough) to 03:00
        high = peak * (weekend if int(day) % 7 in (5, 6) else 1.0)
        rise = peak_hour - 3.0
        x = hour / rise if hour < rise else 1.0 - (hour - rise) / (24.0 - rise)
        return trough + (high - trough) * (1.0 - math.cos(math.pi * x)) / 2.0
    return shape


def bursts(base: float, hours: float, rng: random.Random, per_hour: float, height: tuple[float, float],
           length: tuple[float, float]) -> Shape:
    """``base``, with bursts at Poisson times (``per_hour`` on average), each ``height`` × base (uniform in the
    range) for ``length`` seconds (uniform), rising and falling within a period."""
    spans: list[tuple[float, float, float]] = []
    t = rng.expovariate(per_hour) * HOUR
    while t < hours * HOUR:
        spans.append((t, t + rng.uniform(*length), rng.uniform(*height)))
        t += rng.expovariate(per_hour) * HOUR
    def shape(now: float) -> float:
        return base * max((h for s, e, h in spans if s <= now < e), default=1.0)
    return shape
