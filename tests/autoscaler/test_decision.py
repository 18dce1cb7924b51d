"""The autoscaler's decision on hand-made traces: one test per rule (properties over seeded random traces are
test_decision_properties').

A trace is a list of periods ``(time, readings)`` replayed through ``decide`` by ``Tier``, which carries the
History and converges at once: a scale-out's new servers start (and warm up) at that period, a scale-in removes the
highest-numbered server.
"""

from __future__ import annotations

import math
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
                       scale_in_cooldown=60.0, warmup=30.0, stale_after=30.0, min_fresh=0.5)
# target 0.6 (midway), tolerance 0.1: the tier scales out above 0.66 (out_line), the early line is 0.72, a warming
# tier scales out again above 0.66, a server above 0.9 (hot: midway between upper and 1) scales it out alone, and a
# tier within the band is brought back to target while it stays at or below 0.54 without one server
#: target 0.75: its out_line (0.825) is capped at upper, so only the trend scales it out below upper
NEAR = POLICY.model_copy(update={"target": 0.75})
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

def test_above_target_plus_tolerance_scales_out_at_once_to_target_and_by_at_least_step() -> None:
    decision = Tier(3).period(0.0, 0.85)
    assert (decision.size, decision.direction, decision.rule) == (5, Direction.OUT, Rule.SCALE_OUT)
    assert decision.reason == ("memory average 0.85 over 3 of 3 servers is above 0.66 (target 0.60 plus 10 %): "
                               "scale out 3 → 5 (ceil(3 × 0.85 / target 0.60) = 5; step 1, at most +3, max 8)")
    within = Tier(3).period(0.0, 0.7)  # below upper, but above the HPA's line: 0.7 over 3 asks for 3.5 servers
    assert (within.size, within.rule) == (4, Rule.SCALE_OUT)
    assert within.reason.startswith("memory average 0.70 over 3 of 3 servers is above 0.66 (target 0.60 plus 10 %)")
    assert Tier(3).period(0.0, 0.66).rule is Rule.IN_RANGE  # on the line is not above it
    assert Tier(3, policy=NEAR).period(0.0, 0.78).rule is Rule.IN_RANGE  # 0.825 is above upper: the line is upper
    near = Tier(3, policy=NEAR).period(0.0, 0.85)
    assert (near.size, near.rule) == (4, Rule.SCALE_OUT)  # ceil(3.4): sized to a target near upper
    assert near.reason.startswith("memory average 0.85 over 3 of 3 servers is above upper 0.80: scale out 3 → 4")
    two = NEAR.model_copy(update={"step": 2})
    assert Tier(3, policy=two).period(0.0, 0.85).size == 5  # ceil says 4, step says at least 5


def test_scale_out_sizes_the_tier_to_bring_the_average_to_target_capped_by_max_step_and_max() -> None:
    assert Tier(4).period(0.0, 0.9).size == 6  # ceil(4 × 0.9 / 0.6) = 6: 0.6 each, headroom to upper
    half = POLICY.model_copy(update={"target": 0.5})
    capped = Tier(4, policy=half).period(0.0, 0.88)
    assert (capped.size, capped.rule) == (7, Rule.SCALE_OUT)  # ceil(4 × 0.88 / 0.5) = 8, at most 4 + max_step 3
    assert "= 8; step 1, at most +3, max 8)" in capped.reason
    assert Tier(4, max=6, policy=half).period(0.0, 0.88).size == 6


def test_without_max_step_a_scale_out_at_most_doubles_the_tier_and_adds_at_least_4() -> None:
    """As the HPA's scale-up: at most double the tier, at least 4 servers, per action (``most_added``)."""
    steep = ScalingPolicy(upper=0.3, lower=0.1, cooldown=0.0, stabilisation=0.0, warmup=30.0, stale_after=30.0)
    # target 0.2: 0.64 (below hot 0.65) asks for 3.2 times the servers
    six = Tier(6, max=30, policy=steep).period(0.0, 0.64)
    assert (six.size, six.rule) == (12, Rule.SCALE_OUT)  # ceil(19.2) = 20, at most double
    assert "= 20; step 1, at most +6, max 30)" in six.reason
    two = Tier(2, max=30, policy=steep).period(0.0, 0.64)
    assert (two.size, two.rule) == (6, Rule.SCALE_OUT)  # ceil(6.4) = 7, at most + 4 (more than doubling 2)
    assert "at most +4" in two.reason
    capped = steep.model_copy(update={"max_step": 3})
    assert Tier(6, max=30, policy=capped).period(0.0, 0.64).size == 9  # a max_step the user set is a hard cap
    hot = Tier(6, max=30, policy=steep).period(0.0, [0.95, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert (hot.size, hot.rule) == (12, Rule.SCALE_OUT)  # the average (0.41) is above the line: the same cap
    assert Tier(6, max=30, policy=capped).period(0.0, [0.95, 0.3, 0.3, 0.3, 0.3, 0.3]).size == 9


def test_a_scale_out_at_max_holds() -> None:
    decision = Tier(8, max=8).period(0.0, 0.85)
    assert (decision.size, decision.direction, decision.rule) == (8, Direction.HOLD, Rule.AT_MAX)
    assert decision.reason.endswith("is above 0.66 (target 0.60 plus 10 %), but size 8 is max: hold")
    hot = Tier(8, max=8).period(0.0, [0.95, *[0.5] * 7])
    assert (hot.size, hot.direction, hot.rule) == (8, Direction.HOLD, Rule.AT_MAX)
    assert hot.reason == ("memory average 0.56 over 8 of 8 servers, one of them at 0.95, above hot 0.90, but size 8 "
                          "is max: hold")


def test_one_hot_server_scales_the_tier_out_to_bring_it_under_upper() -> None:
    """Its reading, not the average: the tier grows to ceil(N × hottest / upper)."""
    decision = Tier(4).period(0.0, [0.95, 0.5, 0.5, 0.5])  # the average, 0.61, is within target's tolerance
    assert (decision.size, decision.direction, decision.rule) == (5, Direction.OUT, Rule.HOT)
    assert decision.reading.hottest == 0.95
    assert decision.reason == ("memory average 0.61 over 4 of 4 servers, one of them at 0.95, above hot 0.90: scale "
                               "out 4 → 5 (ceil(4 × 0.95 / upper 0.80) = 5; step 1, at most +3, max 8)")
    assert Tier(4).period(0.0, [0.9, 0.5, 0.5, 0.5]).rule is Rule.IN_RANGE  # on hot is not above it
    full = Tier(6, max=20).period(0.0, [1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert (full.size, full.rule) == (8, Rule.HOT)  # ceil(6 / 0.8) = 8
    one = POLICY.model_copy(update={"max_step": 1})
    assert Tier(6, max=20, policy=one).period(0.0, [1.0, *[0.5] * 5]).size == 7  # max_step caps it
    cool = POLICY.model_copy(update={"hot": 0.97})
    assert Tier(4, policy=cool).period(0.0, [0.95, 0.5, 0.5, 0.5]).rule is Rule.IN_RANGE  # hot set above 0.95
    # a hot server whose average is above the line is the average's: with three servers unread (idle) the average
    # does not carry a scale-out, and the hot rule does not overrule that check
    unread = Tier(4).period(0.0, [0.95, None, None, None])
    assert (unread.size, unread.rule) == (4, Rule.UNCONFIRMED)
    # and where the average asks for more than the hot server would, the average's scale-out is the one made
    both = Tier(2, max=8).period(0.0, [0.95, 0.9])
    assert (both.size, both.rule) == (4, Rule.SCALE_OUT)  # ceil(2 × 0.925 / 0.6) = 4; the hot rule's would be 3


def test_a_hot_server_on_an_idle_tier_or_one_a_scale_out_did_not_cool_does_not_grow_the_tier() -> None:
    """A server hot for a reason other than load (a leak) would grow the tier without end: the hot rule needs the
    average at lower or above, and does not fire again within ``cooldown`` of a scale-out."""
    idle = Tier(6, max=20).period(0.0, [1.0, 0.2, 0.2, 0.2, 0.2, 0.2])  # average 0.33, below lower
    assert idle.size == 6 and idle.rule is not Rule.HOT
    tier = Tier(4, max=20)  # POLICY: warmup 30 s, cooldown 120 s
    first = tier.period(0.0, [0.95, 0.5, 0.5, 0.5])
    assert (first.size, first.rule) == (5, Rule.HOT)
    again = tier.period(60.0, [0.95, 0.5, 0.5, 0.5, 0.5])  # warmed up, still hot, within the cooldown
    assert (again.size, again.rule) == (5, Rule.IN_RANGE) and again.reading.warming == 0
    later = tier.period(121.0, [0.95, 0.5, 0.5, 0.5, 0.5])  # the cooldown is over: the next hot scale-out
    assert (later.size, later.rule) == (6, Rule.HOT)  # ceil(5 × 0.95 / 0.8) = 6


def test_no_hot_scale_out_while_servers_warm_up() -> None:
    """A scale-out on its way was sized for the load; a hot server then is left to the average's rules."""
    tier = Tier(4)
    out, warming = tier.run([(0.0, [0.95, 0.5, 0.5, 0.5]), (15.0, [0.99, 0.5, 0.5, 0.5, None])])
    assert (out.size, out.rule) == (5, Rule.HOT)
    assert (warming.size, warming.rule, warming.reading.warming) == (5, Rule.IN_RANGE, 1)


def test_new_servers_count_idle_while_they_warm_up_so_one_load_scales_out_once() -> None:
    tier = Tier(3)
    out, warming, warm = tier.run([(0.0, 0.9), (15.0, [0.9, 0.9, 0.9, 0.1, 0.1]),
                                   (30.0, [0.9, 0.9, 0.9, 0.1, 0.1])])
    assert (out.size, out.rule) == (5, Rule.SCALE_OUT)
    assert (warming.size, warming.rule) == (5, Rule.UNCONFIRMED)  # 2.7 over 5 servers is 0.54: the target's load
    assert warming.reading == Reading(average=0.9, fresh=3, warming=2, hottest=0.9)
    assert warming.reason.endswith("but not with the 2 servers without a fresh sample counted at their last value or "
                                   "idle (0.54, not above 0.66: target 0.60 plus 10 %): hold")
    assert (warm.rule, warm.reading.fresh) == (Rule.IN_RANGE, 5)  # web-4 and web-5 count now
    assert warm.reading.average == pytest.approx(0.58)


def test_a_load_that_grows_beyond_the_tolerance_while_servers_warm_scales_out_again() -> None:
    tier = Tier(4)
    out, same, more = tier.run([(0.0, 0.9), (15.0, [0.95] * 4 + [None, None]), (20.0, [1.0] * 4 + [None] * 2)])
    assert (out.size, same.size) == (6, 6)  # 3.8 over 6 is 0.63: within target + 10 %
    assert same.rule is Rule.UNCONFIRMED
    assert (more.size, more.rule) == (7, Rule.SCALE_OUT)  # 4 over 6 is 0.67: ceil(6 × 0.67 / 0.6) = 7


def test_a_few_fresh_samples_scale_out_only_if_they_carry_the_unread_servers_at_zero() -> None:
    nine = Tier(10, max=20).period(0.0, [0.88] * 9 + [None])
    assert (nine.size, nine.rule) == (13, Rule.SCALE_OUT)  # 7.92 over 10 is 0.79 > 0.66: ceil(13.2), max_step 3
    five = Tier(10, max=20).period(0.0, [0.88] * 5 + [None] * 5)
    assert (five.size, five.rule) == (10, Rule.UNCONFIRMED)  # 4.4 over 10 is 0.44


def test_a_stale_or_late_servers_newest_value_counts_on_the_scale_out_check() -> None:
    """Five fresh samples at 0.88 of ten servers: the five others carry the scale-out at their last value (stale or
    late), not at 0; a missing server, one whose sample is its predecessor's, or a warming one still counts 0."""
    def period(hosts: list[Host], samples: list[Sample]) -> Decision:
        decision, _ = decide(POLICY, size=10, min=1, max=20, hosts=hosts, samples=samples, now=100.0,
                             history=History())
        return decision

    old = [Host(f"web-{i}", OLD) for i in range(1, 11)]
    fives = fresh(*[0.88] * 5)
    unfresh = [*(Sample(f"web-{i}", 0.88, 60.0) for i in (6, 7, 8)),  # 40 s old: stale
               Sample("web-9", 0.88, 100.0 + SKEW + 1), Sample("web-10", 0.88, 100.0 + SKEW + 5)]  # late
    carried = period(old, [*fives, *unfresh])
    assert carried.reading == Reading(average=pytest.approx(0.88), fresh=5, stale=3, late=2, hottest=0.88,
                                      unfresh_load=pytest.approx(4.4))
    assert (carried.size, carried.rule) == (13, Rule.SCALE_OUT)  # 8.8 over 10 is 0.88: ceil(14.67), max_step 3
    assert "(3 stale, 2 late)" in carried.reason
    low = [*(Sample(f"web-{i}", 0.1, 60.0) for i in (6, 7, 8, 9, 10))]  # their last values were low: hold
    held = period(old, [*fives, *low])
    assert (held.size, held.rule) == (10, Rule.UNCONFIRMED)  # (4.4 + 0.5) / 10 is 0.49
    assert held.reason.endswith("but not with the 5 servers without a fresh sample counted at their last value or "
                                "idle (0.49, not above 0.66: target 0.60 plus 10 %): hold")
    replaced = [*old[:5], *(Host(f"web-{i}", 70.0) for i in range(6, 11))]  # started at 70: warm at 100
    predecessors = period(replaced, [*fives, *(Sample(f"web-{i}", 0.88, 60.0) for i in range(6, 11))])
    assert (predecessors.reading.stale, predecessors.reading.unfresh_load) == (5, 0.0)
    assert predecessors.rule is Rule.UNCONFIRMED  # 4.4 over 10
    warming = [*old[:5], *(Host(f"web-{i}", 90.0) for i in range(6, 11))]
    new = period(warming, [*fives, *(Sample(f"web-{i}", 0.88, 95.0) for i in range(6, 11))])
    assert (new.reading.warming, new.reading.unfresh_load, new.rule) == (5, 0.0, Rule.UNCONFIRMED)
    missing = period(old, fives)
    assert (missing.reading.missing, missing.rule) == (5, Rule.UNCONFIRMED)
    bad = period(old, [*fives, *(Sample(f"web-{i}", math.nan, 60.0) for i in range(6, 11))])
    assert (bad.reading.stale, bad.reading.unfresh_load, bad.rule) == (5, 0.0, Rule.UNCONFIRMED)


# --- the trend: scale out before the SLO line -----------------------------------------------------------------------

def rising(start: float, step: float, periods: int) -> list[tuple[float, Readings]]:
    """Every server at ``start``, then ``step`` more each period."""
    return [(float(k * PERIOD), round(start + step * k, 4)) for k in range(periods)]


#: a rise of 0.035 a period (0.07 a warmup): at 0.655 after 8 periods, not above 0.66, its line projects above 0.72
STEEP = rising(0.41, 0.035, 14)


def test_a_rising_average_scales_out_before_it_crosses_upper() -> None:
    """Above target plus tolerance (0.66) but not above early (0.72), a tier whose trend stays under early a warmup
    ahead has headroom and holds; it scales out once the trend projects above early, before the average reaches
    it. Without a trend line (too few periods) the average above 0.66 scales it out alone. A rise steep enough
    (more than 0.06 a warmup) scales it out from below 0.66, on its trend."""
    slow = Tier(4).run(rising(0.6, 0.01, 14))
    first = next(k for k, d in enumerate(slow) if d.direction is not Direction.HOLD)
    assert (first, slow[first].size, slow[first].rule) == (11, 5, Rule.PREDICTED)
    assert slow[first].reading.average == pytest.approx(0.71)  # not above 0.72; its line projects 0.73
    assert [d.rule for d in slow[:first]] == [Rule.IN_RANGE] * 7 + [Rule.HEADROOM] * 4  # 0.67 to 0.70
    assert slow[7].reason == ("memory average 0.67 over 4 of 4 servers is above 0.66 (target 0.60 plus 10 %) but "
                              "not above 0.72 (upper 0.80 less 10 %), and its trend over 8 periods projects 0.69 in "
                              "30 s, not above it either: hold")
    alone = Tier(4).period(0.0, 0.67)  # no line yet: the average decides
    assert (alone.size, alone.rule) == (5, Rule.SCALE_OUT)
    jump = Tier(4).run([*every(0, 8 * PERIOD, 0.6), (8.0 * PERIOD, 0.73)])[-1]  # above early: at once
    assert (jump.size, jump.rule) == (5, Rule.SCALE_OUT)
    decisions = Tier(4).run(STEEP)
    first = next(k for k, d in enumerate(decisions) if d.direction is not Direction.HOLD)
    early = decisions[first]
    assert (first, early.size, early.rule) == (7, 5, Rule.PREDICTED)
    assert early.reading.average == pytest.approx(0.655)  # not above 0.66: no period of it was above the line
    assert early.reason == ("memory average 0.66 over 4 of 4 servers; its trend over 8 periods projects 0.73 in "
                            "30 s, above 0.72 (upper 0.80 less 10 %): scale out 4 → 5 (ceil(4 × 0.73 / target "
                            "0.60) = 5; step 1, at most +3, max 8)")
    assert {d.rule for d in decisions[:first]} == {Rule.IN_RANGE}
    reactive = Tier(4, policy=POLICY.model_copy(update={"trend": 0.0})).run(STEEP)
    late = next(d for d in reactive if d.direction is not Direction.HOLD)
    assert late.rule is Rule.SCALE_OUT and late.reading.average == pytest.approx(0.69)  # a period later


def test_a_level_average_near_the_scale_out_line_is_not_a_trend() -> None:
    decisions = Tier(4).run(every(0, 600, 0.65))
    assert {d.rule for d in decisions} == {Rule.IN_RANGE}  # its line projects 0.65: not above 0.72


def test_a_line_needs_min_points_periods_and_one_jump_does_not_make_one() -> None:
    steep = Tier(4).run(STEEP[:MIN_POINTS])
    assert [d.rule for d in steep] == [Rule.IN_RANGE] * (MIN_POINTS - 1) + [Rule.PREDICTED]
    short = Tier(4).run(STEEP[1:MIN_POINTS])  # the same periods but the first: one point short of a line
    assert {d.rule for d in short} == {Rule.IN_RANGE}
    jump = Tier(4).run([*rising(0.1, 0.0, MIN_POINTS - 1), (float(PERIOD * (MIN_POINTS - 1)), 0.65)])
    assert jump[-1].rule is Rule.IN_RANGE  # seven periods at 0.1 and one at 0.65: the line projects 0.42


def test_no_line_while_servers_warm_up_and_a_scale_out_that_took_effect_starts_a_new_one() -> None:
    tier = Tier(4)
    decisions = tier.run([*STEEP[:MIN_POINTS], *every(120, 300, 0.55)])
    assert decisions[7].rule is Rule.PREDICTED  # web-5 started at 105 s, counts from 135 s (k = 9)
    assert decisions[8].reading.warming == 1
    assert all(d.rule is Rule.IN_RANGE for d in decisions[8:])
    assert {warmed for _, _, warmed in tier.history.readings} == {5}  # the line of 4 servers is gone
    assert tier.history.readings[0][0] == 135.0
    # a surge: the scale-out at 0.88 was sized for it; at 0.95 with the new servers warming it does not ask again
    surge = Tier(4).run([*every(0, 90, 0.5), (90.0, 0.88), (105.0, 0.95)])
    assert [(d.size, d.rule) for d in surge[-2:]] == [(6, Rule.SCALE_OUT), (6, Rule.UNCONFIRMED)]


# --- scale-in -------------------------------------------------------------------------------------------------------

def test_below_lower_scales_in_after_stabilisation_to_the_size_its_load_needs_in_one_action() -> None:
    tier = Tier(4)
    decisions = tier.run(every(0, 420, 0.1))
    assert [(d.size, d.rule) for d in decisions[:5]] == [(4, Rule.STABILISING)] * 4 + [(1, Rule.SCALE_IN)]
    assert decisions[0].reason.endswith("but the history covers only 0 s of stabilisation 60 s: hold")
    # 0.4 of load: each period asked for 1 server (0.4 on one is below 0.72); never below 1
    assert decisions[4].reason == ("memory average 0.10 over 4 of 4 servers is below lower 0.40 (0.13 without one "
                                   "server, below 0.72: upper less 10 %) and low for 60 s: scale in 4 → 1")
    actions = [(int(at), d.size) for (at, _), d in zip(every(0, 420, 0.1), decisions, strict=True)
               if d.direction is not Direction.HOLD]
    assert actions == [(60, 1)]
    assert {d.rule for d in decisions[5:]} == {Rule.AT_MIN}


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
    assert decisions[4].reason == ("memory average 0.45 over 10 of 10 servers is below 0.47 (midway between lower "
                                   "and 0.54, target 0.60 less 10 %), and 0.50 without one server and low for 60 s: "
                                   "scale in 10 → 9")
    assert {(d.size, d.rule) for d in decisions[5:]} == {(9, Rule.IN_RANGE)}  # 0.5 each: not below 0.47
    assert decisions[-1].reason == ("memory average 0.50 over 9 of 9 servers is within [lower 0.40, upper 0.80]: "
                                    "hold")
    small = Tier(4, max=12).period(0.0, 0.46)  # below 0.47, but 1.84 on 3 servers is 0.61: above 0.54
    assert (small.size, small.rule) == (4, Rule.IN_RANGE)
    assert small.reason == ("memory average 0.46 over 4 of 4 servers is within [lower 0.40, upper 0.80], below 0.47 "
                            "(midway between lower and 0.54, target 0.60 less 10 %), but 0.61 without one server "
                            "would be above 0.54: hold")
    untrimmed = Tier(10, max=12, policy=POLICY.model_copy(update={"tolerance": 0.2}))
    assert {untrimmed.period(float(n * PERIOD), 0.45).rule for n in range(40)} == {Rule.IN_RANGE}  # not below 0.44
    issue = Tier(10, max=12, policy=POLICY.model_copy(update={"scale_in_to_target": False}))
    assert {issue.period(float(n * PERIOD), 0.45).rule for n in range(40)} == {Rule.IN_RANGE}  # above lower: hold
    assert issue.history.recommendations[-1][1] == 10


def test_a_scale_in_waits_cooldown_after_a_scale_out_and_scale_in_cooldown_after_a_scale_in() -> None:
    """Every server at 0.25: on 4, two servers' worth (1.0 on one would be above 0.72); on 2, one server's worth."""
    tier = Tier(3, max=4)
    decisions = tier.run([(0.0, 0.9), *every(15, 300, 0.25)])
    assert (decisions[0].direction, decisions[0].size) == (Direction.OUT, 4)
    assert decisions[1].rule is Rule.UNCONFIRMED  # web-4 warming counts full: (0.75 + 1) / 4 is not below 0.4
    assert [d.rule for d in decisions[2:8]] == [Rule.COOLDOWN] * 6
    assert decisions[2].reason.endswith("but the last action (scale out) was 30 s ago, cooldown 120 s: hold")
    assert (decisions[8].rule, decisions[8].size) == (Rule.SCALE_IN, 2)  # at 120 s, 4 → 2 in one action
    assert [d.rule for d in decisions[9:12]] == [Rule.COOLDOWN] * 3
    assert decisions[9].reason.endswith("but the last action (scale in) was 15 s ago, scale_in_cooldown 60 s: hold")
    assert decisions[12].rule is Rule.STABILISING  # at 180 s the window still holds the 2 asked for at 120 s
    assert (decisions[13].rule, decisions[13].size) == (Rule.SCALE_IN, 1)  # at 195 s


def test_stabilisation_keeps_the_highest_recommendation_of_the_window() -> None:
    late_low = Tier(4).run([*every(0, 30, 0.6), *every(30, 105, 0.1)])
    first_in = [i * PERIOD for i, d in enumerate(late_low) if d.rule is Rule.SCALE_IN]
    assert first_in == [90]  # 60 s after the low began, not 60 s after the trace began
    spike = Tier(4).run([*every(0, 45, 0.1), (45.0, 0.6), *every(60, 135, 0.1)])
    assert [i * PERIOD for i, d in enumerate(spike) if d.rule is Rule.SCALE_IN] == [120]
    assert spike[4].reason.endswith("but a period of the last 60 s asked for 4 servers: hold")


def test_a_scale_in_goes_to_the_highest_recommendation_of_the_window_in_one_action() -> None:
    """Eight servers at 0.1 ask for 2 (0.8 on one would be above 0.72); one period at 0.3 asked for 5."""
    tier = Tier(8)
    decisions = tier.run([*every(0, 30, 0.1), (30.0, 0.3), *every(45, 75, 0.1)])
    assert [r for _, r in tier.history.recommendations] == [2, 2, 5, 2, 2]
    assert (decisions[4].size, decisions[4].direction, decisions[4].rule) == (5, Direction.IN, Rule.SCALE_IN)
    assert decisions[4].reason.endswith("and low for 60 s: scale in 8 → 5")  # not 8 → 7, nor 8 → 2


def test_a_restarted_loop_with_its_history_carries_on() -> None:
    tier = Tier(4)
    tier.run(every(0, 45, 0.1))
    kept = tier.history
    resumed = Tier(4, history=kept).period(60.0, 0.1)
    assert (resumed.size, resumed.rule) == (1, Rule.SCALE_IN)
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
    assert sizes[-1] == 2 and sizes == sorted(sizes, reverse=True)  # 6 → 2, never back out


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
    assert (scaled.size, scaled.rule) == (3, Rule.SCALE_IN)  # (0.4 + 1) / 5 = 0.28; 1.4 / 4 = 0.35; 1.4 / 3 = 0.47
    assert Tier(5, policy=EAGER).period(0.0, [0.1] * 5).size == 1  # read, the fifth server would count 0.1


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
    # web-1's stale value counts on a scale-out's check; web-3's sample is its predecessor's: not at all
    assert decision.reading == Reading(average=0.5, fresh=1, stale=2, hottest=0.5, unfresh_load=0.99)
    assert "(2 stale)" in decision.reason


def test_late_samples_are_not_trusted_and_the_newest_sample_of_a_host_counts() -> None:
    samples = [Sample("web-1", 0.9, 100.0 + SKEW + 1),  # late: stamped after now beyond the skew
               Sample("web-2", 0.7, 100.0 + SKEW - 0.5),  # within the skew: fresh
               Sample("web-3", 0.1, 80.0), Sample("web-3", 0.5, 95.0), Sample("web-3", 0.99, 200.0)]
    decision = once(POLICY, 3, samples)
    assert decision.reading == Reading(average=0.6, fresh=2, late=1, hottest=0.7, unfresh_load=0.9)
    assert decision.rule is Rule.IN_RANGE
    assert "(1 late)" in decision.reason


def test_values_that_are_not_numbers_at_least_zero_count_as_missing() -> None:
    decision = once(POLICY, 4, fresh(math.nan, -0.1, math.inf, 0.5))
    assert decision.reading == Reading(average=0.5, fresh=1, missing=3, hottest=0.5)


def test_samples_of_servers_outside_the_tier_are_ignored() -> None:
    decision = once(POLICY, 2, [*fresh(0.5, 0.6), Sample("web-9", 1.0, 100.0)])
    assert decision.reading == Reading(average=0.55, fresh=2, hottest=0.6)


def test_within_the_band_holds() -> None:
    decision = once(POLICY, 3, fresh(0.5, 0.6, 0.7))
    assert (decision.size, decision.direction, decision.rule) == (3, Direction.HOLD, Rule.IN_RANGE)
    assert decision.reason == "memory average 0.60 over 3 of 3 servers is within [lower 0.40, upper 0.80]: hold"


def test_a_session_rate_is_a_utilisation_of_the_capacity() -> None:
    policy = ScalingPolicy(signal="sessions", capacity=100.0)
    decision = once(policy, 2, fresh(90.0, 85.0))
    assert (decision.size, decision.rule) == (3, Rule.SCALE_OUT)
    assert decision.reason.startswith("sessions average 0.88 over 2 of 2 servers is above 0.66 (target 0.60 plus "
                                      "10 %)")
    hot = once(policy, 2, fresh(95.0, 30.0))  # 0.95 of its capacity: hot, the average 0.63 below the line
    assert (hot.size, hot.rule) == (3, Rule.HOT)


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


def test_the_rules_are_a_closed_set() -> None:
    """The rule's value goes into the state history: a new one is a decision, not an accident."""
    assert [r.value for r in Rule] == ["clamped", "converging", "no-samples", "scale-out", "scale-out-predicted",
                                       "scale-out-hot", "at-max", "unconfirmed", "too-few-samples", "at-min",
                                       "projected", "cooldown", "stabilising", "scale-in", "scale-in-to-target",
                                       "headroom", "in-range"]
