"""The simulated web tier: servers, their memory utilisation under a load, the boot delay, and a run's score.

Each period the load (requests per second) is shared by the *ready* servers: those created at least ``boot``
seconds ago. A ready server's utilisation (memory used over its limit) is ``base + share × per_request`` plus
noise, clipped to [0, 1], where its share is load / ready × (1 + imbalance). A server still booting takes no
load and reports no sample (its exporter is not up yet) but costs server-hours from its creation. A decision is
carried out at once (servers created at that period; a scale-in removes the newest servers first). The period is
in SLO violation when the ready servers' average is above ``upper`` or any one of them is above ``server_slo``.

The noise (imbalance, memory jitter, a missed scrape) is drawn once per trace from the trace's seed, per period
and per server slot (the n-th ready server, oldest first), so every policy meets the same noise.

``Conditions`` add what the trace families (``families``) need beyond the load, each off by default (so the five
traces of bench/autoscale.py score as before): readings lost (a share of them, singly or in runs, per server or the
whole tier at once), one server (web-1, the oldest, never scaled in) that reports late (its value and timestamp
``reporter_lag`` seconds old) or with a skewed clock (its timestamp ``reporter_skew`` seconds off), and servers of
unequal size (``capacities``: the first servers' memory limits relative to the template's; the balancer is not
weighted, so each ready server takes an equal share and a small one runs hotter: ``(base + share) / capacity``).
A per-trace boot delay is the WebTier's ``boot`` (``dataclasses.replace``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.autoscale_sim.traces import HOUR, Trace
from crane_iac.autoscaler.decision import Host, Sample

#: servers present since long before a trace begins
OLD = -HOUR


@dataclass(frozen=True, slots=True)
class WebTier:
    """The tier's model: its numbers are the bench's assumptions, printed with its table."""

    base: float = 0.2  # memory in use with no load, as a fraction of the limit
    per_request: float = 0.004  # memory per req/s a server carries (so 150 req/s bring a server to 0.8)
    imbalance: float = 0.05  # sd of a server's share around load / ready servers
    jitter: float = 0.02  # sd of a server's memory around what its share says
    missed: float = 0.01  # chance that a ready server's sample is missing in a period
    boot: float = 90.0  # seconds from creation to taking load: boot, configuration run, health check
    upper: float = 0.8  # the SLO line for the average (the policies' upper)
    server_slo: float = 0.95  # the SLO line for any one server
    min: int = 2
    max: int = 40
    start_level: float = 0.6  # each run starts with the servers that put the first period's average here

    def initial_size(self, load: float) -> int:
        wanted = math.ceil(load * self.per_request / (self.start_level - self.base) - 1e-9)
        return self.min if wanted < self.min else self.max if wanted > self.max else wanted

    def utilisation(self, load: float, ready: int, imbalance: Sequence[float], jitter: Sequence[float],
                    capacities: Sequence[float] | None = None) -> list[float]:
        """The ready servers' utilisations (slot j gets ``imbalance[j]`` and ``jitter[j]``; with ``capacities``,
        slot j's memory limit is ``capacities[j]`` times the template's)."""
        share = load * self.per_request / ready
        if capacities is None:
            return [min(1.0, max(0.0, self.base + share * (1.0 + imbalance[j]) + jitter[j])) for j in range(ready)]
        return [min(1.0, max(0.0, (self.base + share * (1.0 + imbalance[j])) / capacities[j] + jitter[j]))
                for j in range(ready)]

    def violated(self, utilisations: Sequence[float]) -> tuple[bool, bool]:
        """(average above upper, some server above server_slo); no ready server violates both."""
        if not utilisations:
            return True, True
        return sum(utilisations) / len(utilisations) > self.upper, max(utilisations) > self.server_slo


@dataclass(frozen=True, slots=True)
class Noise:
    """One trace's noise per period and server slot, drawn once from its seed."""

    imbalance: list[list[float]]
    jitter: list[list[float]]
    missed: list[list[bool]]

    @classmethod
    def draw(cls, trace: Trace, tier: WebTier) -> Noise:
        rng = random.Random(trace.seed * 1_000 + 7)
        periods, slots = len(trace.load), tier.max
        return cls([[rng.gauss(0.0, tier.imbalance) for _ in range(slots)] for _ in range(periods)],
                   [[rng.gauss(0.0, tier.jitter) for _ in range(slots)] for _ in range(periods)],
                   [[rng.random() < tier.missed for _ in range(slots)] for _ in range(periods)])


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a trace's tier suffers besides its load (see the module's docstring); the defaults: nothing."""

    loss: float = 0.0  # share of readings lost
    loss_run: float = 1.0  # mean length of a run of lost readings, in periods (1: singly)
    loss_shared: bool = False  # a run loses every server's reading at once (the receiver's), not one server's
    reporter_lag: float = 0.0  # seconds web-1's samples are old when they arrive (value and timestamp)
    reporter_skew: float = 0.0  # seconds web-1's clock is ahead (> 0) or behind (< 0)
    capacities: tuple[float, ...] = ()  # the memory limits of web-1, web-2, … relative to the template's (then 1)

    def lost(self, trace: Trace, slots: int) -> list[list[bool]] | None:
        """Per period and slot, whether the reading is lost: a two-state chain per slot (or one for the tier) whose
        lost state has mean length ``loss_run`` and stationary share ``loss``; None without loss."""
        if self.loss <= 0.0:
            return None
        rng = random.Random(trace.seed * 1_000 + 13)
        back = 1.0 / max(1.0, self.loss_run)  # lost → kept
        into = min(1.0, self.loss * back / (1.0 - self.loss))  # kept → lost
        chains = 1 if self.loss_shared else slots
        state = [rng.random() < self.loss for _ in range(chains)]
        mask = []
        for _ in trace.load:
            state = [rng.random() >= back if s else rng.random() < into for s in state]
            mask.append(state * slots if self.loss_shared else state)
        return mask

    def capacity(self, index: int) -> float:
        """The memory limit of the ``index``-th server created (1: web-1) relative to the template's."""
        return self.capacities[index - 1] if index <= len(self.capacities) else 1.0


class Autoscaler(Protocol):
    """A policy under test: each period, the tier's servers and this period's samples → the size it wants."""

    name: str

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int: ...


@dataclass(frozen=True, slots=True)
class Moment:
    """One period of a run, for explaining it: the load, the servers (all, ready) before the decision, the ready
    servers' true average, the two SLO violations, and the size decided."""

    at: float
    load: float
    servers: int
    ready: int
    average: float
    over_upper: bool
    over_server: bool
    size: int


@dataclass(slots=True)
class Run:
    """A trace replayed through one policy: its score and its periods."""

    trace: Trace
    policy: str
    server_hours: float = 0.0
    outs: int = 0
    ins: int = 0
    moments: list[Moment] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return self.outs + self.ins

    @property
    def slo_minutes(self) -> float:
        return sum(m.over_upper or m.over_server for m in self.moments) * self.trace.period / 60.0

    @property
    def over_upper_minutes(self) -> float:
        return sum(m.over_upper for m in self.moments) * self.trace.period / 60.0

    @property
    def over_server_minutes(self) -> float:
        return sum(m.over_server for m in self.moments) * self.trace.period / 60.0


def simulate(trace: Trace, autoscaler: Autoscaler, tier: WebTier, noise: Noise | None = None, *,
             size: int | None = None, conditions: Conditions | None = None) -> Run:
    """Replay ``trace`` through ``autoscaler`` on ``tier`` from ``size`` servers (the tier's initial size for the
    trace's first load if not given); ``noise`` is drawn from the trace's seed if not given; ``conditions`` (lost
    readings, an odd reporter, unequal servers) none if not given."""
    noise = noise or Noise.draw(trace, tier)
    odd = conditions or Conditions()
    lost = odd.lost(trace, tier.max)
    lag = math.ceil(odd.reporter_lag / trace.period - 1e-9)
    reporter: dict[int, float] = {}  # web-1's utilisation by period, for its late reports
    size = size or tier.initial_size(trace.load[0])
    servers = [Host(f"web-{i}", OLD) for i in range(1, size + 1)]
    capacity = {s.name: odd.capacity(i) for i, s in enumerate(servers, 1)} if odd.capacities else None
    made = size
    run = Run(trace, autoscaler.name)
    for k, load in enumerate(trace.load):
        now = k * trace.period
        ready = [s for s in servers if now - s.started_at >= tier.boot]
        caps = [capacity.get(s.name, 1.0) for s in ready] if capacity is not None else None
        used = tier.utilisation(load, len(ready), noise.imbalance[k], noise.jitter[k], caps) if ready else []
        over_upper, over_server = tier.violated(used)
        samples = [Sample(s.name, u, now) for j, (s, u) in enumerate(zip(ready, used, strict=True))
                   if not noise.missed[k][j] and not (lost is not None and lost[k][j])]
        if (lag or odd.reporter_skew) and ready and ready[0].name == "web-1":
            reporter[k] = used[0]
            samples = [s for s in samples if s.host != "web-1"]
            if k - lag in reporter and not noise.missed[k][0] and not (lost is not None and lost[k][0]):
                samples.insert(0, Sample("web-1", reporter[k - lag], now - odd.reporter_lag + odd.reporter_skew))
        run.server_hours += len(servers) * trace.period / HOUR
        before = len(servers)
        wanted = autoscaler.decide(now, servers, samples)
        if wanted > before:
            run.outs += 1
            servers += [Host(f"web-{made + i}", now) for i in range(1, wanted - before + 1)]
            made += wanted - before
        elif wanted < before:
            run.ins += 1
            servers = servers[:wanted]
        average = sum(used) / len(used) if used else math.nan
        run.moments.append(Moment(now, load, before, len(ready), average, over_upper, over_server, len(servers)))
    return run
