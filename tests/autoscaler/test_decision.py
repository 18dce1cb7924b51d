"""The autoscaler's decision on hand-made traces: one test per rule, then properties over seeded random traces.

A trace is a list of periods ``(time, readings)`` replayed through ``decide`` by ``Tier``, which carries the
History and converges at once: a scale-out's new servers start (and warm up) at that period, a scale-in removes the
highest-numbered server.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from crane_iac.autoscaler.decision import (
    MIN_POINTS,
    SKEW,
    Decision,
    Direction,
    History,
    Host,
    Reading,
    Rule,
    Sample,
    decide,
)
from crane_iac.autoscaler.policy import ScalingPolicy

POLICY = ScalingPolicy(upper=0.8, lower=0.4, step=1, max_step=3, cooldown=120.0, stabilisation=60.0,
                       warmup=30.0, stale_after=30.0, min_fresh=0.5)
# target 0.6 (midway), tolerance 0.1: the early line is 0.72, a warming tier scales out again above 0.66, and a tier
# within the band is brought back to target while it stays at or below 0.54 without one server
#: the time rules off, to look at one arithmetic rule at a time
EAGER = POLICY.model_copy(update={"cooldown": 0.0, "stabilisation": 0.0})
PERIOD = 15
#: servers started long before a trace begins: warmed up
OLD = -1000.0

#: one period's readings: the same value from every server, or one per server (None: no sample)
Readings = float | list[float | None]


@dataclass
class Tier:
    """A web tier replayed through ``decide``, converged at once after each decision."""

    size: int
    min: int = 1
    max: int = 8
    policy: ScalingPolicy = POLICY
    history: History = field(default_factory=History)
    started: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.started or {f"web-{i}": OLD for i in range(1, self.size + 1)}

    def period(self, at: float, readings: Readings) -> Decision:
        hosts = [Host(name, started) for name, started in self.started.items()]
        values = [readings] * len(hosts) if isinstance(readings, float) else readings
        samples = [Sample(f"web-{i}", v, at) for i, v in enumerate(values, 1) if v is not None]
        decision, self.history = decide(self.policy, size=self.size, min=self.min, max=self.max, hosts=hosts,
                                        samples=samples, now=at, history=self.history)
        for i in range(self.size + 1, decision.size + 1):
            self.started[f"web-{i}"] = at
        for i in range(decision.size + 1, self.size + 1):
            self.started.pop(f"web-{i}", None)
        self.size = decision.size
        return decision

    def run(self, trace: list[tuple[float, Readings]]) -> list[Decision]:
        return [self.period(at, readings) for at, readings in trace]


def every(start: int, end: int, readings: Readings) -> list[tuple[float, Readings]]:
    """The same readings each period from ``start`` up to (not including) ``end``."""
    return [(float(at), readings) for at in range(start, end, PERIOD)]


def once(policy: ScalingPolicy, size: int, samples: list[Sample], *, now: float = 100.0,
         hosts: list[Host] | None = None, history: History | None = None) -> Decision:
    """One period of a tier of ``size`` old servers (or ``hosts``)."""
    hosts = hosts if hosts is not None else [Host(f"web-{i}", OLD) for i in range(1, size + 1)]
    decision, _ = decide(policy, size=size, min=1, max=8, hosts=hosts, samples=samples, now=now,
                         history=history or History())
    return decision


def fresh(*values: float | None, at: float = 100.0) -> list[Sample]:
    return [Sample(f"web-{i}", v, at) for i, v in enumerate(values, 1) if v is not None]


# --- scale-out ------------------------------------------------------------------------------------------------------

def test_above_upper_scales_out_at_once_to_target_and_by_at_least_step() -> None:
    decision = Tier(3).period(0.0, 0.85)
    assert (decision.size, decision.direction, decision.rule) == (5, Direction.OUT, Rule.SCALE_OUT)
    assert decision.reason == ("memory average 0.85 over 3 of 3 servers is above upper 0.80: scale out 3 → 5 "
                               "(ceil(3 × 0.85 / target 0.60) = 5; step 1, max_step 3, max 8)")
    near = POLICY.model_copy(update={"target": 0.75})
    assert Tier(3, policy=near).period(0.0, 0.85).size == 4  # ceil(3.4): sized to a target near upper
    two = near.model_copy(update={"step": 2})
    assert Tier(3, policy=two).period(0.0, 0.85).size == 5  # ceil says 4, step says at least 5


def test_scale_out_sizes_the_tier_to_bring_the_average_to_target_capped_by_max_step_and_max() -> None:
    assert Tier(4).period(0.0, 0.9).size == 6  # ceil(4 × 0.9 / 0.6) = 6: 0.6 each, headroom to upper
    half = POLICY.model_copy(update={"target": 0.5})
    capped = Tier(4, policy=half).period(0.0, 1.0)
    assert (capped.size, capped.rule) == (7, Rule.SCALE_OUT)  # ceil(4 / 0.5) = 8, at most 4 + max_step
    assert "= 8" in capped.reason
    assert Tier(4, max=6, policy=half).period(0.0, 1.0).size == 6


def test_above_upper_at_max_holds() -> None:
    decision = Tier(8, max=8).period(0.0, 0.95)
    assert (decision.size, decision.direction, decision.rule) == (8, Direction.HOLD, Rule.AT_MAX)
    assert decision.reason.endswith("is above upper 0.80, but size 8 is max: hold")


def test_new_servers_count_idle_while_they_warm_up_so_one_load_scales_out_once() -> None:
    tier = Tier(3)
    out, warming, warm = tier.run([(0.0, 0.9), (15.0, [0.9, 0.9, 0.9, 0.1, 0.1]),
                                   (30.0, [0.9, 0.9, 0.9, 0.1, 0.1])])
    assert (out.size, out.rule) == (5, Rule.SCALE_OUT)
    assert (warming.size, warming.rule) == (5, Rule.UNCONFIRMED)  # 2.7 over 5 servers is 0.54: the target's load
    assert warming.reading == Reading(average=0.9, fresh=3, warming=2)
    assert warming.reason.endswith("but not with the 2 servers without a fresh sample counted idle (0.54, not "
                                   "above 0.66: target 0.60 plus 10 %): hold")
    assert (warm.rule, warm.reading.fresh) == (Rule.IN_RANGE, 5)  # web-4 and web-5 count now
    assert warm.reading.average == pytest.approx(0.58)


def test_a_load_that_grows_beyond_the_tolerance_while_servers_warm_scales_out_again() -> None:
    tier = Tier(4)
    out, same, more = tier.run([(0.0, 0.9), (15.0, [0.95] * 4 + [None, None]), (20.0, [1.0] * 4 + [None] * 2)])
    assert (out.size, same.size) == (6, 6)  # 3.8 over 6 is 0.63: within target + 10 %
    assert same.rule is Rule.UNCONFIRMED
    assert (more.size, more.rule) == (7, Rule.SCALE_OUT)  # 4 over 6 is 0.67: ceil(6 × 0.67 / 0.6) = 7


def test_a_few_fresh_samples_scale_out_only_if_they_carry_the_unread_servers_at_zero() -> None:
    nine = Tier(10, max=20).period(0.0, [0.95] * 9 + [None])
    assert (nine.size, nine.rule) == (13, Rule.SCALE_OUT)  # 8.55 over 10 is 0.855 > 0.66: ceil(14.25), max_step 3
    five = Tier(10, max=20).period(0.0, [0.95] * 5 + [None] * 5)
    assert (five.size, five.rule) == (10, Rule.UNCONFIRMED)  # 4.75 over 10 is 0.475


# --- the trend: scale out before the SLO line -----------------------------------------------------------------------

def rising(start: float, step: float, periods: int) -> list[tuple[float, Readings]]:
    """Every server at ``start``, then ``step`` more each period."""
    return [(float(k * PERIOD), round(start + step * k, 4)) for k in range(periods)]


def test_a_rising_average_scales_out_before_it_crosses_upper() -> None:
    decisions = Tier(4).run(rising(0.6, 0.01, 14))
    first = next(k for k, d in enumerate(decisions) if d.direction is not Direction.HOLD)
    early = decisions[first]
    assert (first, early.size, early.rule) == (11, 5, Rule.PREDICTED)
    assert early.reading.average == pytest.approx(0.71)  # below upper 0.8: no period of it was in violation
    assert early.reason == ("memory average 0.71 over 4 of 4 servers; its trend over 12 periods projects 0.73 in "
                            "30 s, above 0.72 (upper 0.80 less 10 %): scale out 4 → 5 (ceil(4 × 0.73 / target "
                            "0.60) = 5; step 1, max_step 3, max 8)")
    assert {d.rule for d in decisions[:first]} == {Rule.IN_RANGE}  # at 0.70, projecting 0.72 (not above): hold
    reactive = Tier(4, policy=POLICY.model_copy(update={"trend": 0.0})).run(rising(0.6, 0.01, 25))
    late = next(d for d in reactive if d.direction is not Direction.HOLD)
    assert late.rule is Rule.SCALE_OUT and late.reading.average == pytest.approx(0.81)  # without a trend: too late


def test_a_level_average_near_upper_is_not_a_trend() -> None:
    decisions = Tier(4).run(every(0, 600, 0.71))
    assert {d.rule for d in decisions} == {Rule.IN_RANGE}  # its line projects 0.71: not above 0.72


def test_a_line_needs_min_points_periods_and_one_jump_does_not_make_one() -> None:
    steep = Tier(4).run(rising(0.5, 0.03, MIN_POINTS))
    assert [d.rule for d in steep] == [Rule.IN_RANGE] * (MIN_POINTS - 1) + [Rule.PREDICTED]
    jump = Tier(4).run([*rising(0.1, 0.0, MIN_POINTS - 1), (float(PERIOD * (MIN_POINTS - 1)), 0.7)])
    assert jump[-1].rule is Rule.IN_RANGE  # seven periods at 0.1 and one at 0.7: the line projects 0.45


def test_no_line_while_servers_warm_up_and_a_scale_out_that_took_effect_starts_a_new_one() -> None:
    tier = Tier(4)
    decisions = tier.run(rising(0.6, 0.01, 21))
    assert decisions[11].rule is Rule.PREDICTED  # web-5 started at 165 s, counts from 195 s (k = 13)
    assert all(d.direction is Direction.HOLD for d in decisions[12:20])  # still rising: no line, then a short one
    assert (decisions[20].rule, decisions[20].size) == (Rule.PREDICTED, 7)  # ceil(5 × 0.82 / 0.6)
    assert "its trend over 8 periods" in decisions[20].reason  # the periods since web-5 counts
    assert {warmed for _, _, warmed in tier.history.readings} == {5}
    assert tier.history.readings[0][0] == 195.0
    # a surge: the scale-out at 0.9 was sized for it; the steep line through 8 periods would ask again at 0.95
    surge = Tier(4).run([*rising(0.3, 0.1, 7), (105.0, 0.95)])
    assert [(d.size, d.rule) for d in surge[-2:]] == [(6, Rule.SCALE_OUT), (6, Rule.UNCONFIRMED)]


# --- scale-in -------------------------------------------------------------------------------------------------------

def test_below_lower_scales_in_one_at_a_time_after_stabilisation_and_the_scale_in_cooldown() -> None:
    tier = Tier(4)
    decisions = tier.run(every(0, 420, 0.1))
    assert [(d.size, d.rule) for d in decisions[:5]] == [(4, Rule.STABILISING)] * 4 + [(3, Rule.SCALE_IN)]
    assert decisions[0].reason.endswith("but the history covers only 0 s of stabilisation 60 s: hold")
    assert decisions[4].reason == ("memory average 0.10 over 4 of 4 servers is below lower 0.40 (0.13 without one "
                                   "server, below 0.72: upper less 10 %) and low for 60 s: scale in 4 → 3")
    actions = [(int(at), d.size) for (at, _), d in zip(every(0, 420, 0.1), decisions, strict=True)
               if d.direction is not Direction.HOLD]
    assert actions == [(60, 3), (120, 2), (180, 1)]  # each 60 s (scale_in_cooldown) after the last, never below 1
    assert {d.rule for d in decisions[5:8]} == {Rule.COOLDOWN}
    assert decisions[5].reason.endswith("but the last action (scale in) was 15 s ago, scale_in_cooldown 60 s: hold")
    assert decisions[-1].rule is Rule.AT_MIN


def test_a_stabilising_reason_rounds_the_history_it_covers_to_a_tenth() -> None:
    """Periods do not fall on whole seconds: a reason shows 5.2 s, not 5.20222 s."""
    stabilising = Tier(4).run([(0.0, 0.1), (5.20222, 0.1)])
    assert stabilising[1].reason.endswith("but the history covers only 5.2 s of stabilisation 60 s: hold")


def test_a_cooldown_reason_rounds_the_time_since_the_last_action_to_a_tenth() -> None:
    cooling = Tier(3, max=4).run([(0.0, 0.9), (15.333333, 0.1)])
    assert cooling[1].reason.endswith("but the last action (scale out) was 15.3 s ago, cooldown 120 s: hold")


def test_each_period_asks_for_the_size_its_reading_would_come_down_to() -> None:
    low = Tier(8)
    low.period(0.0, 0.1)
    assert low.history.recommendations == ((0.0, 2),)  # 0.8 of load: on 2 servers the average is 0.4, not below
    band = Tier(10, max=12)
    band.period(0.0, 0.45)
    assert band.history.recommendations == ((0.0, 9),)  # 4.5 on 8 servers would be 0.56: above 0.54


def test_a_tier_larger_than_its_load_needs_comes_back_to_target_from_within_the_band() -> None:
    """The load (4.5 servers' worth) stays the same, spread over however many servers the tier has."""
    tier = Tier(10, max=12)
    decisions = [tier.period(float(n * PERIOD), 4.5 / tier.size) for n in range(40)]
    assert [(d.size, d.rule) for d in decisions[:5]] == [(10, Rule.STABILISING)] * 4 + [(9, Rule.TO_TARGET)]
    assert decisions[4].reason == ("memory average 0.45 over 10 of 10 servers is below 0.54 (target 0.60 less "
                                   "10 %), and 0.50 without one server and low for 60 s: scale in 10 → 9")
    assert {(d.size, d.rule) for d in decisions[5:]} == {(9, Rule.IN_RANGE)}  # 0.5 each: 0.56 on 8 servers
    assert decisions[-1].reason == ("memory average 0.50 over 9 of 9 servers is within [lower 0.40, upper 0.80], "
                                    "below 0.54 (target 0.60 less 10 %), but 0.56 without one server would be above "
                                    "it: hold")
    untrimmed = Tier(10, max=12, policy=POLICY.model_copy(update={"tolerance": 0.2}))
    assert {untrimmed.period(float(n * PERIOD), 0.45).rule for n in range(40)} == {Rule.IN_RANGE}  # not below 0.48
    issue = Tier(10, max=12, policy=POLICY.model_copy(update={"scale_in_to_target": False}))
    assert {issue.period(float(n * PERIOD), 0.45).rule for n in range(40)} == {Rule.IN_RANGE}  # above lower: hold
    assert issue.history.recommendations[-1][1] == 10


def test_a_scale_in_waits_cooldown_after_a_scale_out_and_scale_in_cooldown_after_a_scale_in() -> None:
    tier = Tier(3, max=4)
    decisions = tier.run([(0.0, 0.9), *every(15, 195, 0.1)])
    assert (decisions[0].direction, decisions[0].size) == (Direction.OUT, 4)
    assert [d.rule for d in decisions[1:8]] == [Rule.COOLDOWN] * 7
    assert decisions[1].reason.endswith("but the last action (scale out) was 15 s ago, cooldown 120 s: hold")
    assert (decisions[8].rule, decisions[8].size) == (Rule.SCALE_IN, 3)  # at 120 s
    assert [d.rule for d in decisions[9:12]] == [Rule.COOLDOWN] * 3
    assert (decisions[12].rule, decisions[12].size) == (Rule.SCALE_IN, 2)  # at 180 s: 60 s after the scale-in


def test_stabilisation_keeps_the_highest_recommendation_of_the_window() -> None:
    late_low = Tier(4).run([*every(0, 30, 0.6), *every(30, 105, 0.1)])
    first_in = [i * PERIOD for i, d in enumerate(late_low) if d.rule is Rule.SCALE_IN]
    assert first_in == [90]  # 60 s after the low began, not 60 s after the trace began
    spike = Tier(4).run([*every(0, 45, 0.1), (45.0, 0.6), *every(60, 135, 0.1)])
    assert [i * PERIOD for i, d in enumerate(spike) if d.rule is Rule.SCALE_IN] == [120]
    assert spike[4].reason.endswith("but a period of the last 60 s asked for 4 servers: hold")


def test_a_restarted_loop_with_its_history_carries_on() -> None:
    tier = Tier(4)
    tier.run(every(0, 45, 0.1))
    kept = tier.history
    resumed = Tier(4, history=kept).period(60.0, 0.1)
    assert (resumed.size, resumed.rule) == (3, Rule.SCALE_IN)
    forgotten = Tier(4).period(60.0, 0.1)  # an empty history waits a whole window
    assert forgotten.rule is Rule.STABILISING


def test_history_keeps_only_the_window_and_the_recommendation_in_force_at_its_start() -> None:
    tier = Tier(4, policy=POLICY.model_copy(update={"stabilisation": 30.0, "cooldown": 1000.0}))
    tier.run(every(0, 150, 0.5))
    assert tier.history.recommendations == ((105.0, 4), (120.0, 4), (135.0, 4))
    assert tier.history.readings == tuple((float(at), 0.5, 4) for at in range(0, 150, PERIOD))  # trend 300 s
    short = Tier(4, policy=POLICY.model_copy(update={"trend": 60.0}))
    short.run(every(0, 150, 0.5))
    assert [at for at, _, _ in short.history.readings] == [90.0, 105.0, 120.0, 135.0]


def test_the_projected_average_without_one_server_must_stay_below_the_early_line() -> None:
    policy = ScalingPolicy(upper=0.7, lower=0.4, cooldown=0.0, stabilisation=0.0)
    two = Tier(2, policy=policy).period(0.0, 0.39)
    assert (two.size, two.rule) == (2, Rule.PROJECTED)  # 0.39 × 2 / 1 = 0.78 would be above upper
    assert two.reason.endswith("but without one server the average would be 0.78, not below 0.63 (upper 0.70 less "
                               "10 %): hold")
    near = Tier(2, policy=policy).period(0.0, 0.33)
    assert near.rule is Rule.PROJECTED  # 0.66: below upper, but the early line would scale the tier out again
    four = Tier(4, policy=policy).period(0.0, 0.39)
    assert (four.size, four.rule) == (3, Rule.SCALE_IN)  # 0.39 × 4 / 3 = 0.52


def test_a_constant_load_settles_without_flapping() -> None:
    """The load (in servers' worth) stays the same, spread over however many servers the tier has."""
    def settle(policy: ScalingPolicy, load: float, size: int) -> list[int]:
        tier = Tier(size, policy=policy)
        return [tier.period(float(n * PERIOD), load / tier.size).size for n in range(60)]

    narrow = ScalingPolicy(upper=0.5, lower=0.4, cooldown=0.0, stabilisation=0.0)
    assert set(settle(narrow, 1.05, 3)) == {3}  # 0.35 is below lower, but 0.525 on two would be above upper
    sizes = settle(POLICY, 1.0, 6)
    assert sizes[-1] == 2 and sizes == sorted(sizes, reverse=True)  # 6 → 2 one at a time, never back out


def test_never_below_min_nor_the_last_server() -> None:
    at_min = Tier(2, min=2, policy=EAGER).period(0.0, 0.1)
    assert (at_min.size, at_min.rule) == (2, Rule.AT_MIN)
    last = Tier(1, min=0, policy=EAGER).period(0.0, 0.0)
    assert (last.size, last.rule) == (1, Rule.AT_MIN)
    assert "never the last server" in last.reason


def test_too_few_fresh_samples_never_scale_in() -> None:
    decisions = Tier(5, policy=EAGER).run(every(0, 600, [0.0, 0.0, None, None, None]))
    assert {(d.size, d.rule) for d in decisions} == {(5, Rule.TOO_FEW_SAMPLES)}
    assert decisions[0].reason == ("memory average 0.00 over 2 of 5 servers (3 missing) is below lower 0.40, but a "
                                   "scale-in needs 3 fresh samples (min_fresh 0.5 of 5 servers warmed up): hold")


def test_unread_servers_count_full_when_scaling_in() -> None:
    held = Tier(5, policy=EAGER).period(0.0, [0.3, 0.3, 0.3, 0.3, None])
    assert (held.size, held.rule) == (5, Rule.UNCONFIRMED)  # (1.2 + 1) / 5 = 0.44: not below lower
    assert "counted full (0.44)" in held.reason
    scaled = Tier(5, policy=EAGER).period(0.0, [0.1, 0.1, 0.1, 0.1, None])
    assert (scaled.size, scaled.rule) == (4, Rule.SCALE_IN)  # (0.4 + 1) / 5 = 0.28; 1.4 / 4 = 0.35 without one


# --- readings -------------------------------------------------------------------------------------------------------

def test_no_fresh_sample_holds() -> None:
    none = Tier(3, policy=EAGER).period(0.0, [None, None, None])
    assert (none.size, none.direction, none.rule) == (3, Direction.HOLD, Rule.NO_SAMPLES)
    assert none.reason == "no fresh memory sample from 3 servers (3 missing): hold at 3"
    new = Tier(3, policy=EAGER, started={"web-1": 0.0, "web-2": 0.0, "web-3": 0.0}).period(10.0, 0.99)
    assert (new.rule, new.reading) == (Rule.NO_SAMPLES, Reading(average=None, fresh=0, warming=3))


def test_stale_samples_and_samples_older_than_their_host_are_left_out() -> None:
    policy = POLICY.model_copy(update={"stale_after": 60.0, "warmup": 30.0})
    hosts = [Host("web-1", OLD), Host("web-2", OLD), Host("web-3", 60.0)]  # web-3 replaced at 60, warm at 90
    samples = [Sample("web-1", 0.99, 39.0),  # 61 s old
               Sample("web-2", 0.5, 71.0),
               Sample("web-3", 0.99, 55.0)]  # 45 s old, but from the server web-3 replaced
    decision = once(policy, 3, samples, hosts=hosts)
    assert decision.reading == Reading(average=0.5, fresh=1, stale=2)
    assert "(2 stale)" in decision.reason


def test_late_samples_are_not_trusted_and_the_newest_sample_of_a_host_counts() -> None:
    samples = [Sample("web-1", 0.9, 100.0 + SKEW + 1),  # late: stamped after now beyond the skew
               Sample("web-2", 0.7, 100.0 + SKEW - 0.5),  # within the skew: fresh
               Sample("web-3", 0.1, 80.0), Sample("web-3", 0.5, 95.0), Sample("web-3", 0.99, 200.0)]
    decision = once(POLICY, 3, samples)
    assert decision.reading == Reading(average=0.6, fresh=2, late=1)
    assert decision.rule is Rule.IN_RANGE
    assert "(1 late)" in decision.reason


def test_values_that_are_not_numbers_at_least_zero_count_as_missing() -> None:
    decision = once(POLICY, 4, fresh(math.nan, -0.1, math.inf, 0.5))
    assert decision.reading == Reading(average=0.5, fresh=1, missing=3)


def test_samples_of_servers_outside_the_tier_are_ignored() -> None:
    decision = once(POLICY, 2, [*fresh(0.5, 0.6), Sample("web-9", 1.0, 100.0)])
    assert decision.reading == Reading(average=0.55, fresh=2)


def test_within_the_band_holds() -> None:
    decision = once(POLICY, 3, fresh(0.5, 0.6, 0.7))
    assert (decision.size, decision.direction, decision.rule) == (3, Direction.HOLD, Rule.IN_RANGE)
    assert decision.reason == "memory average 0.60 over 3 of 3 servers is within [lower 0.40, upper 0.80]: hold"


def test_a_session_rate_is_a_utilisation_of_the_capacity() -> None:
    policy = ScalingPolicy(signal="sessions", capacity=100.0)
    decision = once(policy, 2, fresh(90.0, 85.0))
    assert (decision.size, decision.rule) == (3, Rule.SCALE_OUT)
    assert decision.reason.startswith("sessions average 0.88 over 2 of 2 servers is above upper 0.80")


# --- the tier's range and state -------------------------------------------------------------------------------------

def test_a_size_outside_a_changed_range_is_clamped_and_counts_as_an_action() -> None:
    tier = Tier(10, max=8)
    clamped = tier.period(0.0, 0.1)
    assert (clamped.size, clamped.direction, clamped.rule) == (8, Direction.IN, Rule.CLAMPED)
    assert clamped.reason == "size 10 is outside [min 1, max 8]: 10 → 8"
    assert (tier.history.last_action_at, tier.history.last_direction) == (0.0, Direction.IN)
    assert tier.period(15.0, 0.1).rule is Rule.COOLDOWN
    raised = Tier(1, min=2).period(0.0, 0.5)
    assert (raised.size, raised.direction, raised.rule) == (2, Direction.OUT, Rule.CLAMPED)


def test_a_tier_being_converged_holds() -> None:
    decision = once(POLICY, 4, fresh(0.99, 0.99, 0.99), hosts=[Host(f"web-{i}", OLD) for i in (1, 2, 3)])
    assert (decision.size, decision.rule) == (4, Rule.CONVERGING)
    assert decision.reason == "the tier has 3 servers for size 4: an apply is converging it"


def test_a_hold_keeps_the_last_action() -> None:
    before = History(last_action_at=5.0, last_direction=Direction.OUT, recommendations=((5.0, 4),))
    _, after = decide(POLICY, size=4, min=1, max=8, hosts=[Host(f"web-{i}", OLD) for i in range(1, 5)],
                      samples=fresh(0.5, 0.5, 0.5, 0.5), now=100.0, history=before)
    assert (after.last_action_at, after.last_direction) == (5.0, Direction.OUT)
    assert after.recommendations == ((5.0, 4), (100.0, 4))
    assert after.readings == ((100.0, 0.5, 4),)


# --- properties over seeded random traces ---------------------------------------------------------------------------

def random_policy(rng: random.Random) -> ScalingPolicy:
    lower = rng.uniform(0.05, 0.5)
    upper = rng.uniform(lower + 0.05, 1.0)
    step = rng.randint(1, 2)
    return ScalingPolicy(lower=lower, upper=upper, step=step, max_step=rng.randint(step, 4),
                         cooldown=rng.choice([0.0, 30.0, 120.0]), scale_in_cooldown=rng.choice([0.0, 15.0, 60.0]),
                         stabilisation=rng.choice([0.0, 45.0, 90.0]), warmup=rng.choice([0.0, 30.0]),
                         stale_after=30.0, min_fresh=rng.choice([0.3, 0.5, 1.0]),
                         target=rng.choice([None, rng.uniform(lower + 0.01, upper - 0.01)]),
                         tolerance=rng.choice([0.0, 0.1, 0.2]), trend=rng.choice([0.0, 120.0, 300.0]))


def test_random_traces_keep_the_tier_in_range_and_scale_in_only_when_unread_servers_counted_full_allow() -> None:
    """Per period each server sends a fresh, stale, late or invalid sample or none; a scale-in is checked against
    an independent count: every server without a fresh good sample, or warming up, counted full."""
    scale_ins = to_target = scale_outs = predicted = 0
    for seed in range(300):
        rng = random.Random(seed)
        policy = random_policy(rng)
        low = rng.randint(0, 3)
        high = rng.randint(low if low else 1, 10)
        tier = Tier(rng.randint(0, 12), min=low, max=high, policy=policy)
        level = rng.uniform(0.0, 1.0)
        for n in range(40):
            at = float(n * PERIOD)
            level = max(0.0, level + rng.uniform(-0.2, 0.2))
            hosts = [Host(name, started) for name, started in tier.started.items()]
            samples, counted = [], 0.0
            for host in hosts:
                kind, value = rng.random(), max(0.0, level + rng.uniform(-0.1, 0.1))
                if kind < 0.05:
                    counted += 1.0  # no sample
                elif kind < 0.1:
                    samples.append(Sample(host.name, value, at - 60.0))  # stale
                    counted += 1.0
                elif kind < 0.13:
                    samples.append(Sample(host.name, value, at + 10.0))  # late
                    counted += 1.0
                elif kind < 0.15:
                    samples.append(Sample(host.name, math.nan, at))
                    counted += 1.0
                else:
                    samples.append(Sample(host.name, value, at))
                    counted += 1.0 if host.started_at > at - policy.warmup else value
            size = tier.size
            decision, tier.history = decide(policy, size=size, min=low, max=high, hosts=hosts, samples=samples,
                                            now=at, history=tier.history)
            assert low <= decision.size <= high, (seed, n, decision)
            if decision.rule in (Rule.SCALE_IN, Rule.TO_TARGET):
                assert decision.size == size - 1
                # cannot trigger a scale-out, early or not
                assert counted / (size - 1) < policy.upper * (1 - policy.tolerance), (seed, n, decision)
            if decision.rule is Rule.SCALE_IN:
                scale_ins += 1
                assert counted / size < policy.lower, (seed, n, decision)
            if decision.rule is Rule.TO_TARGET:
                to_target += 1
                assert counted / (size - 1) <= policy.sizing * (1 - policy.tolerance) + 1e-9, (seed, n, decision)
            average = decision.reading.average
            if decision.rule is Rule.SCALE_OUT:
                scale_outs += 1
                assert average is not None and average > policy.upper
            if decision.rule is Rule.PREDICTED:
                predicted += 1
                assert average is not None and average <= policy.upper and policy.trend > 0
            for i in range(size + 1, decision.size + 1):
                tier.started[f"web-{i}"] = at
            for i in range(decision.size + 1, size + 1):
                tier.started.pop(f"web-{i}", None)
            tier.size = decision.size
    assert min(scale_ins, to_target, scale_outs) > 20 and predicted > 5, (scale_ins, to_target, scale_outs, predicted)


def test_a_noisy_flat_trace_in_the_middle_of_the_band_never_acts() -> None:
    rng = random.Random(7)
    tier = Tier(5, policy=EAGER)
    trace: list[tuple[float, Readings]] = [
        (float(n * PERIOD), [None if rng.random() < 0.2 else 0.6 + rng.uniform(-0.15, 0.15) for _ in range(5)])
        for n in range(400)]
    decisions = tier.run(trace)
    assert {d.direction for d in decisions} == {Direction.HOLD}
    assert tier.size == 5


def test_missing_samples_never_scale_in_however_low_the_rest() -> None:
    rng = random.Random(11)
    for _ in range(50):
        size = rng.randint(2, 10)
        readers = rng.randint(0, math.ceil(0.5 * size) - 1)  # fewer than min_fresh 0.5 of the tier
        tier = Tier(size, max=10, policy=EAGER)
        decisions = tier.run(every(0, 300, [0.0] * readers + [None] * (size - readers)))
        assert all(d.direction is not Direction.IN for d in decisions), (size, readers)


def test_the_rules_are_a_closed_set() -> None:
    """The rule's value goes into the state history: a new one is a decision, not an accident."""
    assert [r.value for r in Rule] == ["clamped", "converging", "no-samples", "scale-out", "scale-out-predicted",
                                       "at-max", "unconfirmed", "too-few-samples", "at-min", "projected", "cooldown",
                                       "stabilising", "scale-in", "scale-in-to-target", "in-range"]
