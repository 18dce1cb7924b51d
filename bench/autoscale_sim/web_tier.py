"""The simulated web tier: servers, their memory utilisation under a load, the boot delay, and a run's score.

Each period the load (requests per second) is shared by the *ready* servers: those created at least ``boot``
seconds ago. A ready server's utilisation (memory used over its limit) is ``base + share × per_request`` plus
noise, clipped to [0, 1], where its share is load / ready × (1 + imbalance). A server still booting takes no
load and reports no sample (its exporter is not up yet) but costs server-hours from its creation. A decision is
carried out at once (servers created at that period; a scale-in removes the newest servers first). The period is
in SLO violation when the ready servers' average is above ``upper`` or any one of them is above ``server_slo``.

The noise (imbalance, memory jitter, a missed scrape) is drawn once per trace from the trace's seed, per period
and per server slot (the n-th ready server, oldest first), so every policy meets the same noise.
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

    def utilisation(self, load: float, ready: int, imbalance: Sequence[float], jitter: Sequence[float]) -> list[float]:
        """The ready servers' utilisations (slot j gets ``imbalance[j]`` and ``jitter[j]``)."""
        share = load * self.per_request / ready
        return [min(1.0, max(0.0, self.base + share * (1.0 + imbalance[j]) + jitter[j])) for j in range(ready)]

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
             size: int | None = None) -> Run:
    """Replay ``trace`` through ``autoscaler`` on ``tier`` from ``size`` servers (the tier's initial size for the
    trace's first load if not given); ``noise`` is drawn from the trace's seed if not given."""
    noise = noise or Noise.draw(trace, tier)
    size = size or tier.initial_size(trace.load[0])
    servers = [Host(f"web-{i}", OLD) for i in range(1, size + 1)]
    made = size
    run = Run(trace, autoscaler.name)
    for k, load in enumerate(trace.load):
        now = k * trace.period
        ready = [s for s in servers if now - s.started_at >= tier.boot]
        used = tier.utilisation(load, len(ready), noise.imbalance[k], noise.jitter[k]) if ready else []
        over_upper, over_server = tier.violated(used)
        samples = [Sample(s.name, u, now) for j, (s, u) in enumerate(zip(ready, used, strict=True))
                   if not noise.missed[k][j]]
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
