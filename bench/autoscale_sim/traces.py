"""Synthetic load traces for the autoscaling bench: requests per second, one value per period, from fixed seeds.

Five shapes: steady (flat, 2 % noise), ramp (up over 3 h, down over 1 h), spike (two sudden surges), diurnal
(24 h, night trough to afternoon peak, slowly wandering noise) and noisy-flat (flat, 15 % noise each period: a
level that should not scale the tier at all).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Trace:
    """A named load, requests per second for each period of ``period`` seconds, and the seed that made it (the
    simulator seeds the tier's noise from it too)."""

    name: str
    period: float
    seed: int
    load: tuple[float, ...]

    @property
    def hours(self) -> float:
        return len(self.load) * self.period / HOUR


def _trace(name: str, seed: int, hours: float, period: float, shape: Callable[[float], float],
           noise: float, wander: float = 0.0) -> Trace:
    """``shape(t)`` scaled by (1 + iid noise of sd ``noise`` + an AR(1) drift of sd ``wander``), never below 0."""
    rng = random.Random(seed)
    drift = 0.0
    load = []
    for k in range(round(hours * HOUR / period)):
        drift = 0.98 * drift + rng.gauss(0.0, wander * math.sqrt(1 - 0.98 ** 2)) if wander else 0.0
        load.append(max(0.0, shape(k * period) * (1.0 + drift + rng.gauss(0.0, noise))))
    return Trace(name, period, seed, tuple(load))


def _ramp(t: float) -> float:
    """400 req/s for 30 min, up to 2,400 over 3 h, hold 1 h, down to 400 over 1 h, hold 30 min."""
    h = t / HOUR
    if h < 0.5:
        return 400.0
    if h < 3.5:
        return 400.0 + 2000.0 * (h - 0.5) / 3.0
    if h < 4.5:
        return 2400.0
    if h < 5.5:
        return 2400.0 - 2000.0 * (h - 4.5)
    return 400.0


def _spike(t: float) -> float:
    """800 req/s; at 1:00 up to 2,000 within a minute for 15 min (back over 5 min); at 2:30 to 1,600 for 10 min."""
    m = t / 60.0
    if 60.0 <= m < 61.0:
        return 800.0 + 1200.0 * (m - 60.0)
    if 61.0 <= m < 76.0:
        return 2000.0
    if 76.0 <= m < 81.0:
        return 2000.0 - 1200.0 * (m - 76.0) / 5.0
    if 150.0 <= m < 160.0:
        return 1600.0
    return 800.0


def _diurnal(t: float) -> float:
    """300 req/s at 03:00 to 2,400 at 15:00, a cosine over the day."""
    return 300.0 + 2100.0 * (1.0 - math.cos(2 * math.pi * (t / HOUR - 3.0) / 24.0)) / 2.0


def traces(period: float, *, seed: int = 0) -> list[Trace]:
    """The five traces, each from its own fixed seed (``seed`` shifts them all, to see another draw)."""
    base = 11 + 100 * seed
    return [
        _trace("steady", base, 6.0, period, lambda t: 1200.0, noise=0.02),
        _trace("ramp", base + 1, 6.0, period, _ramp, noise=0.03),
        _trace("spike", base + 2, 4.0, period, _spike, noise=0.03),
        _trace("diurnal", base + 3, 24.0, period, _diurnal, noise=0.03, wander=0.08),
        _trace("noisy-flat", base + 4, 6.0, period, lambda t: 1200.0, noise=0.15),
    ]
