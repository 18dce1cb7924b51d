"""Many traces, in families with randomised parameters, from fixed seeds: the evaluation that cannot be fitted to a
handful of traces (issue 19 §1; PEAS, Papadopoulos et al., ACM TOMPECS 2016, evaluates autoscalers this way).

Every trace is a ``Case``: its family, its seed (the only source of its randomness: the same seed gives the same
trace, noise and conditions), a line saying what was drawn, the load, the tier (its boot delay) and the
``Conditions`` it suffers. ``PER_FAMILY`` traces a family; family ``f``'s ``j``-th trace has seed
``10_000 + 100 f + j``. Families:

  steady            flat at 0.45–0.72 of 3–16 servers, 1–4 % noise
  ramp-up/-down     a straight line from one level to 1.5–4× (or back) over 2 min to 3 h (log-uniform: every slope)
  flash-crowd       up to 1.5–4× within 5–60 s, back with a time constant of 2–30 min
  sawtooth-upper/   a sawtooth of one half to one and a half servers' worth either side of 0.72–0.88 (-lower: 0.32–
  -lower            0.48) of 3–16 servers, a cycle of 2–30 min
  square-upper/     the same as a square wave
  -lower
  step-up/-down     a step of 1.2–3× (or 0.25–0.8×) after 15–45 min
  diurnal-weekly    24 h from a random hour of the week: trough at 03:00, peak at 13:00–17:00, weekends' peak
                    0.4–0.8 of weekdays', slowly wandering noise
  noisy-flat        flat at 0.5–0.65 with 5, 10, 15, 20 or 30 % noise per period
  bursts            1–4 bursts an hour of 1.3–2.5× for 30 s to 3 min
  lossy             a base shape (steady, ramp-up, step-up, flash-crowd, sawtooth-upper or bursts) with 0–30 % of
                    readings lost, singly or in runs of 2–12 periods, per server or the whole tier at once
  late-reporter     a base shape; web-1's samples arrive 15–120 s old
  skewed-clock      a base shape; web-1's clock 3–120 s ahead or behind
  boot-delay        a base shape; servers take 30 s to 5 min from creation to taking load (crane's warmup = it)
  unequal-servers   a base shape; the first servers' memory limits 0.75, 1, 1.5 or 2× the template's (new ones 1×)

A tier starts with the servers its level is said of (3–16; a diurnal or ramp-down trace with those its first
load needs at 0.6), and its max lets it reach 0.5 at the trace's peak (at least 40); servers boot in 90 s (but in
boot-delay), as in bench/autoscale.py's five traces. The split: a trace is *held out* when its seed is a multiple
of 5 (a fifth of every family), *tuning* otherwise; fixed here, once, and never changed by a result.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.autoscale_sim import shapes
from bench.autoscale_sim.shapes import MINUTE, Shape, at
from bench.autoscale_sim.traces import HOUR, Trace
from bench.autoscale_sim.web_tier import Conditions, WebTier

PER_FAMILY = 30
FIRST_SEED = 10_000
HELD_OUT_EVERY = 5
BOOT = 90.0
TIER = WebTier()
#: a tier's max is at least the servers its trace's peak needs at this average, so max never decides a result
MAX_LEVEL = 0.5


@dataclass(frozen=True, slots=True)
class Case:
    """One trace of a family, with the tier and conditions it runs on."""

    family: str
    seed: int
    detail: str
    trace: Trace
    tier: WebTier
    conditions: Conditions
    size: int  # the servers the run starts with

    @property
    def held_out(self) -> bool:
        return is_held_out(self.seed)


def is_held_out(seed: int) -> bool:
    """The split, by seed alone: held out when the seed is a multiple of HELD_OUT_EVERY."""
    return seed % HELD_OUT_EVERY == 0


@dataclass(frozen=True, slots=True)
class Load:
    """What a load family draws: the shape, the hours, the per-period noise (sd), a description, the wander, and the
    servers the tier starts with (None: those that put the first period's average at 0.6)."""

    shape: Shape
    hours: float
    noise: float
    detail: str
    wander: float = 0.0
    servers: int | None = None


def _servers(rng: random.Random) -> int:
    return rng.randint(3, 16)


def _steady(rng: random.Random) -> Load:
    level, n, noise = rng.uniform(0.45, 0.72), _servers(rng), rng.uniform(0.01, 0.04)
    return Load(shapes.steady(at(level, n)), rng.uniform(1.0, 2.0), noise, f"{level:.2f} of {n} servers", servers=n)


def _ramp(rng: random.Random, up: bool) -> Load:
    n, level, factor = _servers(rng), rng.uniform(0.45, 0.6), rng.uniform(1.5, 4.0)
    span = math.exp(rng.uniform(math.log(2 * MINUTE), math.log(3 * HOUR)))
    begin, after = rng.uniform(10, 30) * MINUTE, rng.uniform(20, 40) * MINUTE
    low, high = at(level, n), at(level, n) * factor
    start, end = (low, high) if up else (high, low)
    detail = f"{start:.0f} → {end:.0f} req/s over {span / MINUTE:.0f} min"
    return Load(shapes.ramp(start, end, begin, span), (begin + span + after) / HOUR, rng.uniform(0.01, 0.04), detail,
                servers=n if up else None)


def _flash_crowd(rng: random.Random) -> Load:
    n, level, factor = _servers(rng), rng.uniform(0.4, 0.6), rng.uniform(1.5, 4.0)
    when, rise, decay = rng.uniform(15, 40) * MINUTE, rng.uniform(5, 60), rng.uniform(2, 30) * MINUTE
    hours = (when + rise + 4 * decay + 15 * MINUTE) / HOUR
    detail = f"×{factor:.1f} within {rise:.0f} s, decay {decay / MINUTE:.0f} min, from {level:.2f} of {n}"
    return Load(shapes.flash_crowd(at(level, n), at(level, n) * factor, when, rise, decay), hours,
                rng.uniform(0.01, 0.04), detail, servers=n)


def _wave(rng: random.Random, upper: bool, kind: Callable[[float, float, float, float], Shape]) -> Load:
    n = _servers(rng)
    line = rng.uniform(0.72, 0.88) if upper else rng.uniform(0.32, 0.48)
    servers_worth = rng.uniform(0.5, 1.5)
    swing = servers_worth * at(line, 1)
    cycle = rng.uniform(2, 30) * MINUTE
    detail = f"±{servers_worth:.1f} server around {line:.2f} of {n}, cycle {cycle / MINUTE:.0f} min"
    return Load(kind(at(line, n), swing, cycle, rng.uniform(0, cycle)), rng.uniform(1.0, 2.0),
                rng.uniform(0.01, 0.03), detail, servers=n)


def _step(rng: random.Random, up: bool) -> Load:
    n, level = _servers(rng), rng.uniform(0.4, 0.65)
    factor = rng.uniform(1.2, 3.0) if up else rng.uniform(0.25, 0.8)
    when = rng.uniform(15, 45) * MINUTE
    return Load(shapes.step(at(level, n), at(level, n) * factor, when), when / HOUR + rng.uniform(0.75, 1.5),
                rng.uniform(0.01, 0.04), f"×{factor:.2f} at {when / MINUTE:.0f} min from {level:.2f} of {n}", servers=n)


def _diurnal(rng: random.Random) -> Load:
    peak = at(0.6, rng.randint(8, 30))
    trough, weekend = peak * rng.uniform(0.1, 0.3), rng.uniform(0.4, 0.8)
    start, peak_hour = rng.uniform(0, 7 * 24), rng.uniform(13, 17)
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[int(start // 24)]
    detail = f"peak {peak:.0f} req/s at {peak_hour:.0f}:00, weekends ×{weekend:.2f}, from {day} {start % 24:.0f}:00"
    return Load(shapes.diurnal_weekly(trough, peak, weekend, start, peak_hour), 24.0, 0.03, detail,
                wander=rng.uniform(0.03, 0.1))


NOISE_LEVELS = (0.05, 0.10, 0.15, 0.20, 0.30)


def _noisy_flat(rng: random.Random, j: int) -> Load:
    level, n, noise = rng.uniform(0.5, 0.65), _servers(rng), NOISE_LEVELS[j % len(NOISE_LEVELS)]
    return Load(shapes.steady(at(level, n)), rng.uniform(1.0, 2.0), noise,
                f"{level:.2f} of {n} servers, {noise:.0%} noise", servers=n)


def _bursts(rng: random.Random) -> Load:
    n, level, hours = _servers(rng), rng.uniform(0.4, 0.6), rng.uniform(1.0, 2.0)
    per_hour = rng.uniform(1, 4)
    shape = shapes.bursts(at(level, n), hours, rng, per_hour, (1.3, 2.5), (30, 180))
    return Load(shape, hours, rng.uniform(0.01, 0.03), f"{per_hour:.1f}/h from {level:.2f} of {n}", servers=n)


#: the load families, each (rng, j) → Load
LOADS: dict[str, Callable[[random.Random, int], Load]] = {
    "steady": lambda rng, j: _steady(rng),
    "ramp-up": lambda rng, j: _ramp(rng, up=True),
    "ramp-down": lambda rng, j: _ramp(rng, up=False),
    "flash-crowd": lambda rng, j: _flash_crowd(rng),
    "sawtooth-upper": lambda rng, j: _wave(rng, True, shapes.sawtooth),
    "sawtooth-lower": lambda rng, j: _wave(rng, False, shapes.sawtooth),
    "square-upper": lambda rng, j: _wave(rng, True, shapes.square),
    "square-lower": lambda rng, j: _wave(rng, False, shapes.square),
    "step-up": lambda rng, j: _step(rng, up=True),
    "step-down": lambda rng, j: _step(rng, up=False),
    "diurnal-weekly": lambda rng, j: _diurnal(rng),
    "noisy-flat": _noisy_flat,
    "bursts": lambda rng, j: _bursts(rng),
}
#: the shapes a condition family puts its condition on
BASES = ("steady", "ramp-up", "step-up", "flash-crowd", "sawtooth-upper", "bursts")


def _lossy(rng: random.Random) -> tuple[Conditions, float, str]:
    loss = rng.uniform(0.0, 0.3)
    run = 1.0 if rng.random() < 0.4 else rng.uniform(2, 12)
    shared = rng.random() < 0.3
    how = "singly" if run == 1.0 else f"in runs of {run:.0f}"
    return (Conditions(loss=loss, loss_run=run, loss_shared=shared), BOOT,
            f"{loss:.0%} lost {how}{', the whole tier at once' if shared else ''}")


def _late(rng: random.Random) -> tuple[Conditions, float, str]:
    lag = rng.uniform(15, 120)
    return Conditions(reporter_lag=lag), BOOT, f"web-1 reports {lag:.0f} s late"


def _skewed(rng: random.Random) -> tuple[Conditions, float, str]:
    skew = rng.choice((-1, 1)) * rng.uniform(3, 120)
    return Conditions(reporter_skew=skew), BOOT, f"web-1's clock {abs(skew):.0f} s {'ahead' if skew > 0 else 'behind'}"


def _boot(rng: random.Random) -> tuple[Conditions, float, str]:
    boot = rng.uniform(30, 300)
    return Conditions(), boot, f"boot {boot:.0f} s"


def _unequal(rng: random.Random) -> tuple[Conditions, float, str]:
    capacities = tuple(rng.choice((0.75, 1.0, 1.5, 2.0)) for _ in range(16))
    return Conditions(capacities=capacities), BOOT, "sizes " + "/".join(f"{c:g}" for c in capacities[:6]) + "…"


#: the condition families, each rng → (conditions, boot, description), on a base shape from BASES
CONDITIONS: dict[str, Callable[[random.Random], tuple[Conditions, float, str]]] = {
    "lossy": _lossy, "late-reporter": _late, "skewed-clock": _skewed, "boot-delay": _boot,
    "unequal-servers": _unequal,
}
FAMILIES = (*LOADS, *CONDITIONS)


def _load(rng: random.Random, seed: int, name: str, period: float, drawn: Load) -> Trace:
    """The load per period: the shape × (1 + iid noise + an AR(1) wander), never below 0, as traces._trace."""
    drift, load = 0.0, []
    for k in range(round(drawn.hours * HOUR / period)):
        if drawn.wander:
            drift = 0.98 * drift + rng.gauss(0.0, drawn.wander * math.sqrt(1 - 0.98 ** 2))
        load.append(max(0.0, drawn.shape(k * period) * (1.0 + drift + rng.gauss(0.0, drawn.noise))))
    return Trace(name, period, seed, tuple(load))


def case(family: str, j: int, period: float = 15.0) -> Case:
    """Family ``family``'s ``j``-th trace (its seed: FIRST_SEED + 100 × the family's index + j)."""
    seed = FIRST_SEED + 100 * FAMILIES.index(family) + j
    rng = random.Random(seed)
    conditions, boot, extra = Conditions(), BOOT, ""
    if family in CONDITIONS:
        conditions, boot, extra = CONDITIONS[family](rng)
        base = BASES[rng.randrange(len(BASES))]
        drawn = LOADS[base](rng, j)
        detail = f"{extra}; {base}: {drawn.detail}"
    else:
        drawn = LOADS[family](rng, j)
        detail = drawn.detail
    trace = _load(rng, seed, f"{family}/{seed}", period, drawn)
    room = math.ceil(max(trace.load) * TIER.per_request / (MAX_LEVEL - TIER.base))
    tier = replace(TIER, boot=boot, max=room if room > TIER.max else TIER.max)
    size = drawn.servers if drawn.servers is not None else tier.initial_size(trace.load[0])
    return Case(family, seed, detail, trace, tier, conditions, max(tier.min, size))


def index(which: str = "both", per_family: int = PER_FAMILY) -> list[tuple[str, int]]:
    """(family, j) of every trace in ``which`` set: "tuning", "held-out" or "both"."""
    wanted = {"tuning": (False,), "held-out": (True,), "both": (False, True)}[which]
    return [(family, j) for f, family in enumerate(FAMILIES) for j in range(per_family)
            if is_held_out(FIRST_SEED + 100 * f + j) in wanted]
