"""The many-traces evaluation: the families are deterministic and split stably by seed, the simulator's conditions
do what they say, and a handful of traces of every family runs through every policy into the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import pytest

from bench.autoscale_sim.evaluation import BOUND, CRANE, HPA, PLAIN, VARIANTS, evaluate
from bench.autoscale_sim.families import FAMILIES, FIRST_SEED, PER_FAMILY, case, index, is_held_out
from bench.autoscale_sim.policies import Foresight
from bench.autoscale_sim.report import Figures, report
from bench.autoscale_sim.traces import Trace
from bench.autoscale_sim.web_tier import Conditions, WebTier, simulate
from crane_iac.autoscaler.decision import Host, Sample
from tests.bench.test_autoscale_sim import EXACT, Scripted, flat


def test_there_are_at_least_500_traces_in_18_families_a_fifth_of_each_held_out() -> None:
    both = index("both")
    assert len(FAMILIES) == 18 and len(both) == 18 * PER_FAMILY >= 500
    held, tuning = index("held-out"), index("tuning")
    assert sorted(held + tuning) == sorted(both) and not set(held) & set(tuning)
    for family in FAMILIES:
        assert sum(f == family for f, _ in held) == PER_FAMILY // 5
    assert is_held_out(FIRST_SEED) and not is_held_out(FIRST_SEED + 1)  # seed % 5 == 0, once and for all


def test_the_same_seed_gives_the_same_trace_and_each_trace_names_its_family_and_seed() -> None:
    for family in FAMILIES:
        first, again, other = case(family, 2), case(family, 2), case(family, 3)
        assert first == again
        assert first.trace.load != other.trace.load
        assert first.trace.name == f"{family}/{first.seed}" and first.trace.seed == first.seed
        assert first.held_out == (first.seed % 5 == 0)
        assert min(first.trace.load) >= 0.0 and first.tier.min <= first.size <= first.tier.max


def test_the_condition_families_draw_what_the_issue_lists() -> None:
    lossy = [case("lossy", j).conditions for j in range(PER_FAMILY)]
    assert all(0.0 <= c.loss <= 0.3 for c in lossy)
    assert any(c.loss_run == 1.0 for c in lossy) and any(c.loss_run > 1.0 for c in lossy)
    assert any(c.loss_shared for c in lossy)
    boots = [case("boot-delay", j).tier.boot for j in range(PER_FAMILY)]
    assert min(boots) >= 30.0 and max(boots) <= 300.0 and max(boots) - min(boots) > 120.0
    skews = [case("skewed-clock", j).conditions.reporter_skew for j in range(PER_FAMILY)]
    assert min(skews) < 0.0 < max(skews)
    assert all(15.0 <= case("late-reporter", j).conditions.reporter_lag <= 120.0 for j in range(5))
    assert all(set(case("unequal-servers", j).conditions.capacities) - {1.0} for j in range(5))
    assert case("diurnal-weekly", 0).trace.hours == 24.0


def test_lost_readings_come_in_runs_at_about_the_share_drawn() -> None:
    trace = Trace("flat", 15.0, 5, (1.0,) * 4000)
    single = Conditions(loss=0.2).lost(trace, 4)
    runs = Conditions(loss=0.2, loss_run=8.0).lost(trace, 4)
    shared = Conditions(loss=0.2, loss_run=8.0, loss_shared=True).lost(trace, 4)
    assert Conditions().lost(trace, 4) is None
    assert single is not None and runs is not None and shared is not None
    for mask in (single, runs):
        assert sum(map(sum, mask)) / (4000 * 4) == pytest.approx(0.2, abs=0.03)
    column = [period[0] for period in runs]
    starts = sum(1 for a, b in pairwise(column) if b and not a)
    assert sum(column) / starts == pytest.approx(8.0, rel=0.25)  # mean run length
    assert all(len(set(period)) == 1 for period in shared)  # the whole tier at once


def test_a_late_reporter_sends_an_old_value_with_its_old_timestamp_and_a_skewed_one_a_shifted_stamp() -> None:
    trace = Trace("rising", 15.0, 1, (100.0, 200.0, 300.0, 400.0))
    seen: list[list[tuple[str, float, float]]] = []

    class Watcher(Scripted):
        def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
            seen.append([(s.host, round(s.value, 3), s.at) for s in samples])
            return super().decide(now, servers, samples)

    simulate(trace, Watcher([2] * 4), EXACT, size=2, conditions=Conditions(reporter_lag=20.0))
    # web-1's value arrives two periods (ceil(20 / 15)) old, stamped 20 s before now; web-2's is current
    assert seen[0] == [("web-2", 0.4, 0.0)]
    assert seen[2] == [("web-1", 0.4, 10.0), ("web-2", 0.8, 30.0)]
    seen.clear()
    simulate(trace, Watcher([2] * 4), EXACT, size=2, conditions=Conditions(reporter_skew=-70.0))
    assert seen[1] == [("web-1", 0.6, -55.0), ("web-2", 0.6, 15.0)]


def test_a_small_server_runs_hotter_under_an_unweighted_balancer() -> None:
    run = simulate(flat(500.0, 2), Scripted([4, 4]), EXACT, size=4, conditions=Conditions(capacities=(0.5,)))
    # each takes 125 req/s: 0.2 + 0.5 = 0.7 on the template, 0.7 / 0.5 (clipped to 1) on the half-size one
    assert run.moments[0].average == pytest.approx((1.0 + 3 * 0.7) / 4)
    assert run.moments[0].over_server and not run.moments[0].over_upper  # the small one is above 95 %


def test_foresight_sizes_for_the_peak_a_boot_delay_ahead() -> None:
    load = (300.0, 300.0, 300.0, 900.0, 900.0, 300.0, 300.0, 300.0)
    ahead = Foresight(load, period=15.0, boot=30.0, base=0.2, per_request=0.004, least=1, most=10)
    # 900 req/s at 0.7 need ceil(900 × 0.004 / 0.5) = 8 servers; from 3 periods ahead (boot 30 s: 2 periods + 1)
    assert ahead.sizes == [8, 8, 8, 8, 8, 3, 3, 3]
    run = simulate(Trace("surge", 15.0, 1, load), ahead, EXACT, size=3)
    assert run.slo_minutes == 0.0


def test_a_few_traces_of_every_family_run_through_every_policy_into_the_report() -> None:
    outcomes = [evaluate(case(family, j), variants=j == 0) for family in FAMILIES for j in (0, 1)
                if family != "diurnal-weekly"]
    outcomes.append(evaluate(replace(case("diurnal-weekly", 0), trace=_first_hours(case("diurnal-weekly", 0).trace))))
    for o in outcomes:
        assert {PLAIN, HPA, CRANE, BOUND} <= set(o.scores)
        assert all(s.server_hours > 0 and s.slo_minutes >= 0 for s in o.scores.values())
    assert evaluate(case("steady", 0)) == evaluate(case("steady", 0))  # deterministic end to end
    full = [o for o in outcomes if len(o.scores) == 4 + len(VARIANTS)]
    text = report("Smoke", full, markdown=True)
    for line in ("| all |", "SLO time ≤ (ii) on ≥ 95 % of traces", "No cliff", "tolerance 0.15"):
        assert line in text
    figures = Figures.of(full)
    assert figures.slo[1] == len(full) and len(figures.points()) == 4


def _first_hours(trace: Trace, hours: float = 3.0) -> Trace:
    return replace(trace, load=trace.load[:round(hours * 3600 / trace.period)])


def test_the_five_traces_are_untouched_by_the_conditions_default() -> None:
    trace = flat(600.0, 8)
    tier = replace(WebTier(), boot=30.0)
    plain, conditioned = (simulate(trace, Scripted([7] * 8), tier, size=6, conditions=c)
                          for c in (None, Conditions()))
    assert plain.moments == conditioned.moments
