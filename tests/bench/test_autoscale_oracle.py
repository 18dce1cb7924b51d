"""The clairvoyant bound (bench/autoscale_sim/oracle.py): its answers on hand-made traces worked out by hand, its
table against every schedule of tiny traces replayed through the simulator, and, on random traces, never more
actions than any policy's run that keeps within the same violations and server-hours."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.autoscale_sim.evaluation import Score
from bench.autoscale_sim.families import case
from bench.autoscale_sim.oracle import BUDGETS, NEVER, boot_periods, bound, fewest, frontier, needs, reach
from bench.autoscale_sim.policies import CraneController, Fixed, Foresight, HpaRule, PlainRule
from bench.autoscale_sim.report import reach_report
from bench.autoscale_sim.traces import Trace
from bench.autoscale_sim.web_tier import Autoscaler, Conditions, Noise, Run, WebTier, simulate
from crane_iac.autoscaler.policy import ScalingPolicy
from tests.bench.test_autoscale_sim import EXACT, Scripted

QUIET, SURGE = 300.0, 900.0  # on EXACT: 2 servers carry 300 req/s at 0.8, 6 carry 900


def periods(run: Run) -> tuple[int, int, int]:
    """A run's (actions, violation periods, server-periods)."""
    return run.actions, Score.of(run).violating, sum(m.servers for m in run.moments)


def table_for(trace: Trace, tier: WebTier, start: int, violations: int, most: int) -> list[list[int]]:
    need = needs(trace, tier, Noise.draw(trace, tier), size=start)
    return frontier(need, start=start, least=tier.min, most_size=tier.max, boot=boot_periods(tier.boot, trace.period),
                    violations=violations, most=most)


def test_the_boot_delay_in_periods_is_the_simulators() -> None:
    assert [boot_periods(b, 15.0) for b in (0.0, 15.0, 30.0, 31.0, 90.0, 300.0)] == [1, 1, 2, 3, 6, 20]
    # a server created at period 0 with boot 31 s first takes load at period 3
    run = simulate(Trace("flat", 15.0, 1, (QUIET,) * 4), Scripted([3] * 4), replace(EXACT, boot=31.0), size=2)
    assert [m.ready for m in run.moments] == [2, 2, 2, 3]


def test_a_periods_need_is_the_fewest_ready_servers_out_of_violation() -> None:
    trace = Trace("step", 15.0, 1, (QUIET,) * 3 + (SURGE,) * 3 + (2000.0,))
    assert needs(trace, EXACT, Noise.draw(trace, EXACT), size=2) == [2, 2, 2, 6, 6, 6, 11]  # 11 > max 10: never


def test_a_step_needs_exactly_one_scale_out_a_boot_delay_ahead() -> None:
    trace = Trace("step", 15.0, 1, (QUIET,) * 8 + (SURGE,) * 8)
    table = table_for(trace, EXACT, start=2, violations=0, most=3)
    assert table[0][0] == NEVER  # holding 2 servers violates from period 8
    assert table[1][0] == 2 * 7 + 6 * 9  # 6 servers decided at period 6 (ready at 8: boot 30 s = 2 periods)
    assert fewest(table, hours=68) == {b: 1 for b in BUDGETS}
    # the simulator agrees: that schedule has 1 action, no violation, 68 server-periods, and one period later violates
    assert periods(simulate(trace, Scripted([2] * 6 + [6] * 10), EXACT, size=2)) == (1, 0, 68)
    assert periods(simulate(trace, Scripted([2] * 7 + [6] * 9), EXACT, size=2))[1] == 1


def test_a_surge_at_the_start_costs_a_boot_delay_of_violation_whatever_the_schedule() -> None:
    trace = Trace("surge", 15.0, 1, (SURGE,) * 10)
    assert all(h == NEVER for row in table_for(trace, EXACT, start=2, violations=1, most=3) for h in row)
    table = table_for(trace, EXACT, start=2, violations=2, most=3)
    assert fewest(table, hours=10**6) == {b: 1 for b in BUDGETS}  # out at once: periods 0 and 1 violate
    assert table[1][2] == 2 + 6 * 9


def test_a_tight_budget_binds_more_actions_than_the_slo_alone() -> None:
    load = (QUIET,) * 6 + (SURGE,) * 6 + (QUIET,) * 20 + (SURGE,) * 6 + (QUIET,) * 6
    trace = Trace("two surges", 15.0, 1, load)
    # out 2 periods ahead of each surge (ready as it starts), in on its last period (gone the period after): 4 actions
    sizes = [2] * 4 + [6] * 7 + [2] * 19 + [6] * 7 + [2] * 7
    actions, violating, tight = periods(simulate(trace, Scripted(sizes), EXACT, size=2))
    assert (actions, violating) == (4, 0)
    table = table_for(trace, EXACT, start=2, violations=0, most=5)
    assert min(table[4]) == tight  # the oracle finds that schedule's server-hours, and none fewer
    assert tight == 2 * 5 + 6 * 7 + 2 * 19 + 6 * 7 + 2 * 6
    # 3 actions: the second surge's servers kept to the end (+24); 2: 6 servers through the trough; 1: to the end
    assert [min(row) for row in table[:4]] == [NEVER, 2 * 5 + 6 * 39, 2 * 5 + 6 * 33 + 2 * 6, tight + 4 * 6]
    assert fewest(table, tight) == {1.0: 4, 1.1: 4, 1.25: 3, 1.5: 3, math.inf: 1}


def _every_schedule(trace: Trace, tier: WebTier, start: int) -> dict[tuple[int, int], int]:
    """Brute force through the simulator: the fewest server-periods per (actions, violations) of every schedule."""
    best: dict[tuple[int, int], int] = {}
    for sizes in itertools.product(range(tier.min, tier.max + 1), repeat=len(trace.load)):
        actions, violating, hours = periods(simulate(trace, Scripted(list(sizes)), tier, size=start))
        best[actions, violating] = min(best.get((actions, violating), NEVER), hours)
    return best


def test_the_table_is_never_above_any_schedule_and_matches_the_best_on_tiny_traces() -> None:
    tier = replace(EXACT, min=1, max=3, boot=30.0)
    for load, start in (((150.0, 300.0, 450.0, 450.0, 150.0, 300.0), 1),
                        ((450.0, 150.0, 150.0, 450.0, 450.0, 150.0), 2),
                        ((300.0, 300.0, 150.0, 450.0, 150.0, 450.0), 3)):
        trace = Trace("tiny", 15.0, 1, load)
        best = _every_schedule(trace, tier, start)
        table = table_for(trace, tier, start, violations=3, most=3)
        for a, v in itertools.product(range(4), range(4)):
            ours = min(min(table[x][:v + 1]) for x in range(a + 1))
            theirs = min((h for (x, y), h in best.items() if x <= a and y <= v), default=NEVER)
            assert ours == theirs, (load, a, v)


loads = st.lists(st.floats(min_value=0.0, max_value=700.0), min_size=4, max_size=24)


@settings(max_examples=60, deadline=None)
@given(loads, st.integers(1, 4), st.sampled_from([15.0, 30.0, 60.0, 90.0]), st.integers(0, 10**6),
       st.booleans())
def test_the_oracle_never_takes_more_actions_than_a_run_within_its_bounds(
        load: list[float], start: int, boot: float, seed: int, unequal: bool) -> None:
    """Every policy's run is a schedule: where it keeps (ii)'s violations and a budget, the oracle's fewest actions
    at that budget are no more than the run's. (ii)'s own run always qualifies at budget 1.0."""
    tier = replace(WebTier(), boot=boot, min=1, max=8)
    trace = Trace("random", 15.0, seed, tuple(load))
    odd = Conditions(capacities=(0.75, 2.0, 1.5)) if unequal else Conditions()
    policies: list[Autoscaler] = [
        HpaRule(target=0.6, min=1, max=8), PlainRule(upper=0.8, lower=0.4, min=1, max=8), Fixed(),
        Foresight(trace.load, period=15.0, boot=boot, base=tier.base, per_request=tier.per_request, least=1, most=8),
        CraneController(ScalingPolicy(upper=0.8, lower=0.4, warmup=boot), min=1, max=8)]
    noise = Noise.draw(trace, tier)
    runs = [periods(simulate(trace, p, tier, noise, size=start, conditions=odd)) for p in policies]
    hpa_actions, violations, hours = runs[0]
    found = bound(trace, tier, noise, size=start, conditions=odd, violations=violations, hours=hours,
                  most=max(a for a, _, _ in runs))
    assert found.actions[1.0] is not None and found.actions[1.0] <= hpa_actions
    for actions, violating, spent in runs:
        if violating <= violations:
            for b in BUDGETS:
                if spent <= b * hours:
                    fewest_at = found.actions[b]
                    assert fewest_at is not None and fewest_at <= actions
    by_budget = [found.actions[b] for b in BUDGETS]
    assert all(x is not None and y is not None and y <= x for x, y in itertools.pairwise(by_budget))


def test_a_trace_of_the_families_gets_its_bound_and_the_references_moved_lines() -> None:
    outcome, reached = reach(case("step-up", 1))
    assert reached.family == "step-up" and reached.plain == outcome.scores["plain two-threshold"].actions
    assert set(reached.bound.actions) == set(BUDGETS)
    assert {"HPA-style, target 0.55", "HPA-style, tolerance 0.15", "foresight at 0.65"} <= set(outcome.scores)
    text = reach_report("Smoke", [outcome], [reached], markdown=True)
    for line in ("| all | 1 |", "median server-hours ≤ (ii) + 10 %", "| HPA-style, target 0.65 |"):
        assert line in text
