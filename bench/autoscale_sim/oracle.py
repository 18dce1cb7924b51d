"""A clairvoyant lower bound on the scaling actions a trace needs: issue 19 asks where "fewer actions than the plain
rule" is out of reach for *any* policy, so this computes, per trace, the fewest actions of any schedule of tier
sizes that knows the future load and keeps (a) no more SLO-violation periods than the HPA-style rule's run and
(b) no more server-hours than ``b`` × that run's, for each budget ``b`` in ``BUDGETS``.

The model is web_tier's, not a copy of it: a period's violation comes from ``WebTier.utilisation`` and
``WebTier.violated`` on the trace's own noise (its imbalance and jitter; the oracle sees the true utilisation, so
missed or lost samples, a late reporter or a skewed clock, which only change what a policy *sees*, do not
concern it); server-hours count the servers present at each period's start, booting or not, and an action is a
period whose size differs from the one before, as ``simulate`` counts them. What a size schedule S_0, S_1, …
(S_k: the size decided at period k; S_-1: the size the run starts with) does there:

* the servers ready at period k are min(S_{k-B}, …, S_{k-1}), where B = the boot delay in periods, rounded up:
  a scale-in removes the newest servers at once, a scale-out's servers take load B periods after their creation;
* period k is in violation when ``violated`` says so for those ready servers.

**Need.** ``needs`` gives, per period, the fewest ready servers for which the period is *not* in violation.
Noise makes violation all but monotone in the ready count (a server's imbalance draw may push the maximum over
95 % with one server more); the bound counts a period as violated only below its need, which is never more than
the truth. With servers of unequal size (a small server runs hotter) the violation also depends on how many of
the first, unequal servers are still there (a scale-in below their number removes some for good); the need is
taken over every number the schedule could have kept, again never more than the truth.

**The dynamic programme** (``frontier``) runs period by period over the tier's size, carrying how many actions
and how many violation periods were spent so far (both small integers: actions up to ``most``, violations up to
the HPA-style rule's count), and keeps for each the fewest server-periods. That is a table of the least
server-hours per (actions, violations), so every budget is read from one run. A scale-in takes effect at once; a
scale-out from size S to S' jumps B periods ahead: for B − 1 periods the tier has S' servers and S ready, then S'
ready. Two facts make this a *lower bound* on the actions of every schedule in web_tier's model (and exact on a
schedule that never scales out twice within a boot delay, which the optimum rarely wants):

1. A scale-in within B − 1 periods after a scale-out (before its servers are ready) is never needed: merging the
   two into one scale-out to the smaller size (or dropping the scale-out) leaves the ready servers the same at every
   period, with fewer server-hours and one action less. So the bound need not let anything but a scale-out happen
   while one is booting.
2. Two or more scale-outs within one boot delay (to S1, then S2, …) are counted as a "double" jump: two actions,
   the final size ready when the first batch is, and the booting periods charged at S + 1 servers. It has no more
   actions, no more violations and no more server-hours than the real schedule, so it only loosens the bound.

The sizes run from the tier's min to the larger of the size it starts with and the highest need that max allows:
a schedule with more servers than every period needs can have them removed without a violation more, an action
more or a server-hour more, so no schedule is lost.

The cost: (periods × sizes × actions × violations) additions in lists: 1–2 s for a 24-hour trace, under one for most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.autoscale_sim.evaluation import CRANE, HPA, HPA_TARGET, PLAIN, Outcome, Score, evaluate
from bench.autoscale_sim.families import Case, case
from bench.autoscale_sim.policies import Foresight, HpaRule
from bench.autoscale_sim.traces import HOUR, Trace
from bench.autoscale_sim.web_tier import Autoscaler, Conditions, Noise, WebTier, simulate

#: server-hour budgets, as multiples of the HPA-style rule's on the same trace (inf: any)
BUDGETS = (1.0, 1.1, 1.25, 1.5, math.inf)
#: larger than any trace's server-periods (stands for "no schedule gets here")
NEVER = 1 << 60

Row = list[int]  # the fewest server-periods by actions × (violations + 1) + violations


def boot_periods(boot: float, period: float) -> int:
    """B: a server created at period j takes load from period j + B on (web_tier: ``now - started_at >= boot``)."""
    b = 1
    while b * period < boot:
        b += 1
    return b


def needs(trace: Trace, tier: WebTier, noise: Noise, conditions: Conditions | None = None, *,
          size: int | None = None) -> list[int]:
    """Per period, the fewest ready servers (from tier.min) with which it is not in violation, or tier.max + 1 if
    none up to tier.max; with unequal servers, over every number of the first ``size`` servers still there."""
    odd = conditions or Conditions()
    start = size or tier.initial_size(trace.load[0])
    out = []
    for k, load in enumerate(trace.load):
        need = tier.max + 1
        for ready in range(max(1, tier.min), tier.max + 1):
            if odd.capacities:
                kept = range(tier.min, min(start, ready) + 1)
                layouts: list[list[float] | None] = [
                    [odd.capacity(i) for i in range(1, m + 1)] + [1.0] * (ready - m) for m in kept]
            else:
                layouts = [None]
            if any(not any(tier.violated(tier.utilisation(load, ready, noise.imbalance[k], noise.jitter[k], caps)))
                   for caps in layouts):
                need = ready
                break
        out.append(need)
    return out


def _shift_v(row: Row | None, w: int, width: int) -> Row | None:
    """``w`` more violation periods: each action's block moves up by w (past ``width`` − 1: dropped)."""
    if row is None or w == 0:
        return row
    if w >= width:
        return None
    out: Row = []
    pad = [NEVER] * w
    for first in range(0, len(row), width):
        out += pad
        out += row[first:first + width - w]
    return out


def _shift_a(row: Row | None, d: int, width: int) -> Row | None:
    """``d`` more actions (past ``most``: dropped)."""
    if row is None or d * width >= len(row):
        return None
    return [NEVER] * (d * width) + row[:len(row) - d * width]


def _least(x: Row | None, y: Row | None) -> Row | None:
    if x is None:
        return y
    if y is None:
        return x
    return list(map(min, x, y))


def _plus(row: Row | None, hours: int) -> Row | None:
    return None if row is None else [h + hours for h in row]


def frontier(need: Sequence[int], *, start: int, least: int, most_size: int, boot: int, violations: int,
             most: int) -> list[list[int]]:
    """The fewest server-periods of any schedule from ``start`` servers, sizes in [least, most_size], ``boot``
    periods from creation to taking load, per [actions ≤ most][violation periods ≤ violations] (NEVER: none).
    ``need``: per period, the fewest ready servers that keep it out of violation."""
    periods, width = len(need), violations + 1
    length = (most + 1) * width
    top = max(start, min(most_size, max((n for n in need if n <= most_size), default=least)))
    sizes = range(least, top + 1)
    n = len(sizes)
    # over[s][k]: periods before k whose need is above size least + s
    over = []
    for size in sizes:
        acc, row = 0, [0]
        for x in need:
            acc += x > size
            row.append(acc)
        over.append(row)
    state: list[Row | None] = [None] * n
    state[start - least] = [0] + [NEVER] * (length - 1)
    arrivals: dict[int, list[Row | None]] = {}
    for k in range(periods):
        landed = arrivals.pop(k, None)
        if landed is not None:
            state = [_least(x, y) for x, y in zip(state, landed, strict=True)]
        for s, size in enumerate(sizes):  # period k: its violation and its servers
            row = state[s]
            if row is not None and need[k] > size:
                row = _shift_v(row, 1, width)
            state[s] = _plus(row, size)
        if k == periods - 1 or most == 0:
            continue
        after = list(state)  # holding
        running: Row | None = None
        for s in range(n - 1, -1, -1):  # a scale-in: at once, to any smaller size
            if running is not None:
                after[s] = _least(after[s], running)
            running = _least(running, _shift_a(state[s], 1, width))
        end = min(k + boot, periods)  # a scale-out lands, all ready, at period end
        booting = end - (k + 1)  # periods charged at the new size while its servers boot
        single: list[Row | None] = []
        double: list[Row | None] = []
        for s, size in enumerate(sizes):
            w = over[s][end] - over[s][k + 1]
            single.append(_shift_v(_shift_a(state[s], 1, width), w, width))
            double.append(_plus(_shift_v(_shift_a(state[s], 2, width), w, width), (size + 1) * booting)
                          if booting else None)
        land: list[Row | None] = [None] * n
        late: list[Row | None] = [None] * n  # the doubles, one period later
        one: Row | None = None
        two: Row | None = None
        for t, size in enumerate(sizes):
            if t >= 2:
                two = _least(two, double[t - 2])
            land[t] = _plus(one, size * booting)
            one = _least(one, single[t])
            if end < periods:  # period end: the size is final, at most size − 1 of it ready
                late[t] = _plus(_shift_v(two, int(need[end] > size - 1), width), size)
            else:
                late[t] = two
        _land(arrivals, end, land, periods)
        _land(arrivals, end + 1, late, periods)
        state = after
    best: Row = [NEVER] * length
    for row in [*state, *(r for rows in arrivals.values() for r in rows)]:
        best = _least(best, row) or best
    return [best[a * width:(a + 1) * width] for a in range(most + 1)]


def _land(arrivals: dict[int, list[Row | None]], at: int, rows: list[Row | None], periods: int) -> None:
    """Schedules arriving at period ``at`` (all ready, nothing charged yet for it); past the trace's end: kept at
    ``periods``, to be read at the end."""
    key = min(at, periods)
    waiting = arrivals.get(key)
    arrivals[key] = rows if waiting is None else [_least(x, y) for x, y in zip(waiting, rows, strict=True)]


def fewest(table: list[list[int]], hours: int, budgets: Sequence[float] = BUDGETS) -> dict[float, int | None]:
    """Per budget, the fewest actions whose least server-periods (at any allowed violation count) are within
    budget × ``hours``; None: more than the table's ``most``."""
    best = [min(by_violations) for by_violations in table]
    out: dict[float, int | None] = {}
    for b in budgets:
        limit = math.inf if b == math.inf else b * hours + 1e-6
        out[b] = next((a for a, h in enumerate(best) if h < NEVER and h <= limit), None)
    return out


@dataclass(frozen=True, slots=True)
class Bound:
    """One trace's oracle: the fewest actions per budget (None: more than ``most``, the most looked for)."""

    most: int
    actions: dict[float, int | None]


def bound(trace: Trace, tier: WebTier, noise: Noise, *, size: int, conditions: Conditions | None, violations: int,
          hours: int, most: int) -> Bound:
    """The fewest actions of any clairvoyant schedule with at most ``violations`` violation periods and at most
    budget × ``hours`` server-periods, looked for up to ``most`` actions (first up to 2, the usual answer, then
    up to ``most``: the table's cost grows with it)."""
    need = needs(trace, tier, noise, conditions, size=size)
    boot = boot_periods(tier.boot, trace.period)
    looked = min(most, 2)
    while True:
        table = frontier(need, start=size, least=tier.min, most_size=tier.max, boot=boot, violations=violations,
                         most=looked)
        found = fewest(table, hours)
        if looked == most or None not in found.values():
            return Bound(looked, found)
        looked = most


#: the references and foresight with their sizing line moved as crane's variants move it (the no-cliff check)
HPA_VARIANTS: dict[str, dict[str, float]] = {
    "target 0.55": {"target": 0.55}, "target 0.65": {"target": 0.65},
    "tolerance 0.05": {"tolerance": 0.05}, "tolerance 0.15": {"tolerance": 0.15}}
FORESIGHT_LEVELS = (0.55, 0.6, 0.65)


def hpa_name(what: str) -> str:
    return f"{HPA}, {what}"


def foresight_name(level: float) -> str:
    return f"foresight at {level:g}"


@dataclass(frozen=True, slots=True)
class Reach:
    """One trace's actions for (i) and crane, and the oracle's bound under each budget."""

    family: str
    seed: int
    held_out: bool
    plain: int
    crane: int
    bound: Bound

    def beaten(self, budget: float) -> bool:
        """Some clairvoyant schedule within the budget takes fewer actions than (i)."""
        fewest = self.bound.actions[budget]
        return fewest is not None and fewest < self.plain

    @property
    def must_act(self) -> bool:
        """No schedule without an action keeps (ii)'s violation periods: a policy that meets the SLO target here
        acts, so the trace counts in the "fewer actions" share whatever the policy."""
        return self.bound.actions[math.inf] != 0


def reach(one: Case) -> tuple[Outcome, Reach]:
    """``one`` through evaluation's policies and crane's variants, the HPA-style rule and foresight with their line
    moved (their scores added to the Outcome's), and the oracle against (i) and (ii)."""
    outcome = evaluate(one)
    noise = Noise.draw(one.trace, one.tier)
    tier, trace = one.tier, one.trace
    extra: list[Autoscaler] = []
    for what, change in HPA_VARIANTS.items():
        hpa = HpaRule(target=change.get("target", HPA_TARGET), tolerance=change.get("tolerance", 0.1),
                      min=tier.min, max=tier.max)
        hpa.name = hpa_name(what)
        extra.append(hpa)
    for level in FORESIGHT_LEVELS:
        ahead = Foresight(trace.load, period=trace.period, boot=tier.boot, base=tier.base,
                          per_request=tier.per_request, least=tier.min, most=tier.max, level=level)
        ahead.name = foresight_name(level)
        extra.append(ahead)
    for policy in extra:
        run = simulate(trace, policy, tier, noise, size=one.size, conditions=one.conditions)
        outcome.scores[policy.name] = Score.of(run)
    plain, hpa_score = outcome.scores[PLAIN], outcome.scores[HPA]
    hours = round(hpa_score.server_hours * HOUR / trace.period)
    found = bound(trace, tier, noise, size=one.size, conditions=one.conditions, violations=hpa_score.violating,
                  hours=hours, most=max(0, min(plain.actions - 1, hpa_score.actions)))
    return outcome, Reach(one.family, one.seed, one.held_out, plain.actions, outcome.scores[CRANE].actions, found)


def reach_at(where: tuple[str, int]) -> tuple[Outcome, Reach]:
    """A worker's job: (family, j) → the Outcome and the Reach (the case rebuilt from its seed in the worker)."""
    return reach(case(*where))
