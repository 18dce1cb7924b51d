"""The three policies the bench compares, each seeing the same servers and samples each period.

* ``PlainRule``: CRANE's plain two-threshold rule: the average of the samples above ``upper`` → one server more,
  below ``lower`` → one fewer, every period, no stabilisation or cooldown.
* ``HpaRule``: Kubernetes' HPA as its replica calculator and default behaviour have it (pkg/controller/podautoscaler:
  replica_calculator.go, horizontal.go): desired = ceil(ready × average / target) outside a 10 % tolerance of the
  target; servers without a sample (booting ones, a missed scrape) counted at 0 on a scale-out and at 100 % on a
  scale-in, the change dropped if that reverses its direction; a scale-in goes only to the highest recommendation
  of the last 5 minutes; a scale-out at once, at most max(2 × N, N + 4) a period.
* ``CraneController``: crane's own ``decide`` with a ScalingPolicy, carrying its History between periods.

And two that are not policies under test: ``Fixed`` (a tier that never acts) and ``Foresight`` (a reference that knows
the future load).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from crane_iac.autoscaler.decision import Decision, History, Host, Sample, decide
from crane_iac.autoscaler.policy import ScalingPolicy


def _clamp(n: int, least: int, most: int) -> int:
    return least if n < least else most if n > most else n


class PlainRule:
    """(i) one server more above ``upper``, one fewer below ``lower``, every period."""

    name = "plain two-threshold"

    def __init__(self, *, upper: float, lower: float, min: int, max: int) -> None:
        self.upper, self.lower, self.min, self.max = upper, lower, min, max

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        size = len(servers)
        if not samples:
            return size
        average = sum(s.value for s in samples) / len(samples)
        if average > self.upper:
            return _clamp(size + 1, self.min, self.max)
        if average < self.lower:
            return _clamp(size - 1, self.min, self.max)
        return size


class HpaRule:
    """(ii) the HPA's replica calculation with its tolerance, missing-sample handling and scale-down window."""

    name = "HPA-style"

    def __init__(self, *, target: float, min: int, max: int, tolerance: float = 0.1, window: float = 300.0) -> None:
        self.target, self.min, self.max, self.tolerance, self.window = target, min, max, tolerance, window
        self.recommendations: list[tuple[float, int]] = []

    def replicas(self, size: int, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        """replica_calculator.go's GetResourceReplicas for one utilisation metric (requests = limit)."""
        values = {s.host: s.value for s in samples}
        if not values:
            return size
        ratio = sum(values.values()) / len(values) / self.target
        missing = sum(1 for s in servers if s.name not in values)
        if not missing:
            if abs(1.0 - ratio) <= self.tolerance:
                return size
            return math.ceil(ratio * len(values) - 1e-9)
        fill = 1.0 if ratio < 1.0 else 0.0 if ratio > 1.0 else None
        counted = len(values) + (missing if fill is not None else 0)
        new_ratio = (sum(values.values()) + (fill or 0.0) * missing) / counted / self.target
        if abs(1.0 - new_ratio) <= self.tolerance or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
            return size
        wanted = math.ceil(new_ratio * counted - 1e-9)
        if (new_ratio < 1.0 and wanted > size) or (new_ratio > 1.0 and wanted < size):
            return size
        return wanted

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        size = len(servers)
        wanted = _clamp(self.replicas(size, servers, samples), self.min, self.max)
        self.recommendations = [(at, r) for at, r in self.recommendations if at > now - self.window]
        self.recommendations.append((now, wanted))
        if wanted < size:
            return min(size, max(r for _, r in self.recommendations))
        if wanted > size:
            return min(wanted, max(2 * size, size + 4), self.max)
        return size


class CraneController:
    """(iii) crane's ``decide``, its History carried from period to period; the decisions kept for explaining."""

    name = "crane"

    def __init__(self, policy: ScalingPolicy, *, min: int, max: int) -> None:
        self.policy, self.min, self.max = policy, min, max
        self.history = History()
        self.decisions: list[Decision] = []

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        decision, self.history = decide(self.policy, size=len(servers), min=self.min, max=self.max, hosts=servers,
                                        samples=samples, now=now, history=self.history)
        self.decisions.append(decision)
        return decision.size

    @property
    def rules(self) -> Counter[str]:
        return Counter(d.rule.value for d in self.decisions)


class Fixed:
    """Not a policy under test: a tier that never acts, to tell whether acting was needed at all."""

    name = "fixed size"

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        return len(servers)


class Foresight:
    """Not a policy under test: a reference. It knows the trace's future load and sizes the tier, a boot delay
    ahead, for the highest load until its new servers would take load at an average of ``level``; it scales in as
    soon as that allows. Where it avoids all violation, a policy could have; where it violates too (a trace that
    starts in a surge, a load past max), the violation is hard to avoid. It is blind to noise and to the servers'
    sizes, so it is no lower bound where servers are unequal (a policy that holds more servers does better)."""

    name = "foresight"

    def __init__(self, load: Sequence[float], *, period: float, boot: float, base: float, per_request: float,
                 least: int, most: int, level: float = 0.7) -> None:
        ahead = math.ceil(boot / period) + 1
        per = per_request / (level - base)
        self.sizes = [_clamp(math.ceil(max_load * per - 1e-9), least, most)
                      for max_load in (max(load[k:k + ahead + 1]) for k in range(len(load)))]
        self.period = period

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        return self.sizes[round(now / self.period)]
