"""The autoscaling bench's simulator and scoring: its arithmetic on noise-free tiers and hand-made runs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.autoscale_sim.policies import HpaRule, PlainRule
from bench.autoscale_sim.targets import fewer_actions, judge, late_scale_outs, server_hours
from bench.autoscale_sim.traces import Trace, traces
from bench.autoscale_sim.web_tier import OLD, Moment, Noise, Run, WebTier, simulate
from crane_iac.autoscaler.decision import Host, Sample

#: no imbalance, jitter or missed samples: every ready server at exactly base + load × per_request / ready
EXACT = WebTier(imbalance=0.0, jitter=0.0, missed=0.0, boot=30.0, min=1, max=10)


class Scripted:
    """A test double for a policy: the size it wants at each period, from a list; records what it was shown."""

    name = "scripted"

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.seen: list[tuple[int, int]] = []  # (servers, samples) per period

    def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
        self.seen.append((len(servers), len(samples)))
        return self.sizes[len(self.seen) - 1]


def flat(load: float, periods: int, period: float = 15.0) -> Trace:
    return Trace("flat", period, 1, (load,) * periods)


def hosts(n: int) -> list[Host]:
    return [Host(f"web-{i}", OLD) for i in range(1, n + 1)]


def samples(*values: float) -> list[Sample]:
    return [Sample(f"web-{i}", v, 0.0) for i, v in enumerate(values, 1)]


def test_a_ready_server_carries_base_plus_its_share_of_the_load_clipped_at_the_limit() -> None:
    zeros = [0.0] * 10
    assert EXACT.utilisation(600.0, 4, zeros, zeros) == pytest.approx([0.8] * 4)  # 0.2 + 150 × 0.004
    assert EXACT.utilisation(1200.0, 4, zeros, zeros) == [1.0] * 4  # 1.4 is past the memory limit
    assert EXACT.utilisation(600.0, 2, [0.5, -0.5], [0.0, -0.9]) == pytest.approx([1.0, 0.0])
    assert EXACT.initial_size(600.0) == 6  # 2.4 of load memory at 0.4 a server: an average of 0.6


def test_the_slo_is_broken_by_the_average_above_upper_or_one_server_above_95_percent() -> None:
    assert EXACT.violated([0.8, 0.8]) == (False, False)  # "above" is strict
    assert EXACT.violated([0.81, 0.81]) == (True, False)
    assert EXACT.violated([0.96, 0.5]) == (False, True)
    assert EXACT.violated([]) == (True, True)  # no ready server: nobody serves


def test_a_new_server_costs_from_creation_but_takes_load_only_after_the_boot_delay() -> None:
    script = Scripted([3, 3, 3, 3, 2, 2])
    run = simulate(flat(420.0, 6), script, EXACT, size=2)  # 2 servers: 0.2 + 0.84 = 1.04, clipped to 1.0
    assert [(m.servers, m.ready, m.size) for m in run.moments] == [
        (2, 2, 3), (3, 2, 3), (3, 3, 3), (3, 3, 3), (3, 3, 2), (2, 2, 2)]  # created at 0 s, ready at 30 s
    assert [m.average for m in run.moments] == pytest.approx([1.0, 1.0, 0.76, 0.76, 0.76, 1.0])
    assert [m.over_upper for m in run.moments] == [True, True, False, False, False, True]
    assert script.seen[1] == (3, 2)  # the booting server is listed but reports no sample
    assert run.server_hours == pytest.approx((2 + 3 + 3 + 3 + 3 + 2) * 15.0 / 3600.0)
    assert (run.outs, run.ins, run.actions) == (1, 1, 2)
    assert run.slo_minutes == pytest.approx(3 * 0.25)


def test_a_scale_in_removes_the_newest_server_first() -> None:
    seen: list[list[str]] = []

    class Watcher(Scripted):
        def decide(self, now: float, servers: Sequence[Host], samples: Sequence[Sample]) -> int:
            seen.append([s.name for s in servers])
            return super().decide(now, servers, samples)

    simulate(flat(400.0, 3), Watcher([4, 3, 3]), EXACT, size=3)
    assert seen == [["web-1", "web-2", "web-3"], ["web-1", "web-2", "web-3", "web-4"], ["web-1", "web-2", "web-3"]]


def test_every_policy_meets_the_same_noise_drawn_from_the_trace_seed() -> None:
    trace = traces(15.0)[0]
    tier = WebTier()
    first, again = Noise.draw(trace, tier), Noise.draw(trace, tier)
    assert first == again
    assert len(first.jitter) == len(trace.load) and len(first.jitter[0]) == tier.max
    assert traces(15.0) == traces(15.0)
    assert traces(15.0, seed=1)[0].load != trace.load
    assert {t.name: t.hours for t in traces(15.0)} == {"steady": 6, "ramp": 6, "spike": 4, "diurnal": 24,
                                                       "noisy-flat": 6}


def test_the_plain_rule_moves_one_server_each_period_outside_its_thresholds() -> None:
    plain = PlainRule(upper=0.8, lower=0.4, min=2, max=5)
    assert plain.decide(0.0, hosts(3), samples(0.9, 0.8, 0.8)) == 4  # average 0.83
    assert plain.decide(15.0, hosts(3), samples(0.3, 0.4, 0.4)) == 2
    assert plain.decide(30.0, hosts(2), samples(0.1, 0.1)) == 2  # min
    assert plain.decide(45.0, hosts(5), samples(1.0)) == 5  # max
    assert plain.decide(60.0, hosts(3), []) == 3


def test_the_hpa_rule_sizes_by_ratio_outside_its_tolerance() -> None:
    hpa = HpaRule(target=0.6, min=1, max=40)
    assert hpa.replicas(4, hosts(4), samples(0.65, 0.65, 0.65, 0.65)) == 4  # ratio 1.08: within 10 %
    assert hpa.replicas(4, hosts(4), samples(0.9, 0.9, 0.9, 0.9)) == 6  # ceil(4 × 0.9 / 0.6)
    assert hpa.replicas(4, hosts(4), samples(0.3, 0.3, 0.3, 0.3)) == 2


def test_the_hpa_rule_counts_servers_without_a_sample_against_the_change() -> None:
    hpa = HpaRule(target=0.6, min=1, max=40)
    warming = [*hosts(4), Host("web-5", 0.0), Host("web-6", 0.0)]
    # 4 × 0.9 over 6 servers is 0.6: the scale-out the 4 samples ask for is already under way
    assert hpa.replicas(6, warming, samples(0.9, 0.9, 0.9, 0.9)) == 6
    assert hpa.replicas(6, warming, samples(1.0, 1.0, 1.0, 1.0)) == 7  # 4 / 6 = 0.67, ceil(6 × 1.11)
    # scale-in: the two silent ones at 100 %: (4 × 0.2 + 2) / 6 = 0.47, ceil(6 × 0.78) = 5
    assert hpa.replicas(6, warming, samples(0.2, 0.2, 0.2, 0.2)) == 5


def test_the_hpa_rule_scales_in_only_to_the_highest_recommendation_of_its_window_and_out_at_once() -> None:
    hpa = HpaRule(target=0.6, min=1, max=40, window=60.0)
    assert hpa.decide(0.0, hosts(4), samples(0.9, 0.9, 0.9, 0.9)) == 6
    low = samples(*[0.3] * 6)
    assert [hpa.decide(at, hosts(6), low) for at in (15.0, 30.0, 45.0, 60.0)] == [6, 6, 6, 3]
    assert hpa.decide(75.0, hosts(2), samples(1.0, 1.0)) == 4  # ceil(3.33), within max(2N, N + 4) = 6


def run_of(actions: tuple[int, int], hours_servers: int, violations: list[bool], name: str = "flat") -> Run:
    """A hand-made run: ``hours_servers`` servers each period, the given violating periods, the actions."""
    trace = Trace(name, 15.0, 1, (0.0,) * len(violations))
    moments = [Moment(k * 15.0, 0.0, hours_servers, hours_servers, 0.5, bad, False, hours_servers)
               for k, bad in enumerate(violations)]
    return Run(trace, "hand-made", hours_servers * len(violations) * 15.0 / 3600.0, *actions, moments)


def test_the_targets_compare_crane_with_the_two_other_policies() -> None:
    quiet = run_of((0, 0), 4, [False] * 240)
    assert fewer_actions(quiet, quiet).ok is None  # nobody acts: nothing to be fewer than
    assert fewer_actions(run_of((2, 1), 4, [False]), run_of((2, 1), 4, [False])).ok is False
    assert server_hours(run_of((0, 0), 11, [False] * 4), run_of((0, 0), 10, [False] * 4)).ok is True  # +10 %
    assert server_hours(run_of((0, 0), 12, [False] * 4), run_of((0, 0), 10, [False] * 4)).ok is False
    # noisy-flat over one hour: one action is allowed, two are not
    calm = judge(run_of((1, 0), 4, [False] * 240, "noisy-flat"), run_of((3, 3), 4, [False] * 240),
                 run_of((0, 0), 4, [True] + [False] * 239))
    assert [(v.target, v.ok) for v in calm] == [("fewer actions than (i)", True), ("SLO time ≤ (ii)", True),
                                                ("server-hours ≤ (ii) + 10 %", True),
                                                ("≤ 1 action/h on noisy-flat", True)]
    busy = judge(run_of((2, 0), 4, [False] * 240, "noisy-flat"), quiet, quiet)
    assert busy[-1].ok is False and busy[-1].figure == "2.00/h"


def test_violation_within_the_boot_delay_after_a_scale_out_counts_as_waiting_for_it() -> None:
    run = run_of((0, 0), 2, [False, True, True, True, True, False, True])
    moments = list(run.moments)
    moments[1] = Moment(15.0, 0.0, 2, 2, 0.9, True, False, 3)  # a scale-out decided on a violating period
    run.moments = moments
    late = late_scale_outs(run, boot=30.0)  # the decision's period and 2 more
    assert (late.outs, late.decided_in_violation) == (1, 1)
    assert (late.minutes, late.waiting_minutes) == (5 * 0.25, 3 * 0.25)
