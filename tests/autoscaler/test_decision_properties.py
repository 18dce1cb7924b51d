"""The autoscaler's decision: properties over seeded random traces (hand-made traces, one test per rule, are
test_decision's; ``Tier`` replays a trace as there)."""

from __future__ import annotations

import math
import random

from crane_iac.autoscaler.decision import Direction, Host, Rule, Sample, decide
from crane_iac.autoscaler.policy import ScalingPolicy
from tests.autoscaler.test_decision import EAGER, PERIOD, POLICY, Readings, Tier, every, rising


def random_policy(rng: random.Random) -> ScalingPolicy:
    lower = rng.uniform(0.05, 0.5)
    upper = rng.uniform(lower + 0.05, 1.0)
    step = rng.randint(1, 2)
    hot = rng.choice([None, rng.uniform(upper, 1.0) + 0.001])
    return ScalingPolicy(lower=lower, upper=upper, step=step, max_step=rng.choice([None, rng.randint(step, 4)]),
                         hot=hot,
                         cooldown=rng.choice([0.0, 30.0, 120.0]), scale_in_cooldown=rng.choice([0.0, 15.0, 60.0]),
                         stabilisation=rng.choice([0.0, 45.0, 90.0]), warmup=rng.choice([0.0, 30.0]),
                         stale_after=30.0, min_fresh=rng.choice([0.3, 0.5, 1.0]),
                         target=rng.choice([None, rng.uniform(lower + 0.01, upper - 0.01)]),
                         tolerance=rng.choice([0.0, 0.1, 0.2]), trend=rng.choice([0.0, 120.0, 300.0]))


def test_random_traces_keep_the_tier_in_range_and_scale_in_only_when_unread_servers_counted_full_allow() -> None:
    """Per period each server sends a fresh, stale, late or invalid sample or none; a scale-in is checked against
    an independent count: every server without a fresh good sample, or warming up, counted full; a scale-out by the
    average against one with a stale or late server at its value, a warming, missing or invalid one at 0."""
    scale_ins = to_target = scale_outs = predicted = hots = 0
    for seed in range(300):
        rng = random.Random(seed)
        policy = random_policy(rng)
        low = rng.randint(0, 3)
        high = rng.randint(low if low else 1, 10)
        tier = Tier(rng.randint(0, 12), min=low, max=high, policy=policy)
        level = rng.uniform(0.0, 1.0)
        # a third of the traces ramp up steadily (what the trend is for) and start again low past 1.2
        ramp = rng.uniform(0.01, 0.06) if rng.random() < 0.33 else None
        # and in a third, web-1 is a smaller server than the rest: it reads hotter than the average
        small = rng.uniform(0.2, 0.45) if rng.random() < 0.33 else 0.0
        for n in range(40):
            at = float(n * PERIOD)
            if ramp is None:
                level = max(0.0, level + rng.uniform(-0.2, 0.2))
            else:
                level = level + ramp + rng.uniform(-0.01, 0.01) if level < 1.2 else rng.uniform(0.0, 0.5)
            hosts = [Host(name, started) for name, started in tier.started.items()]
            samples, counted, carried, values = [], 0.0, 0.0, []
            for host in hosts:
                kind, value = rng.random(), max(0.0, level + rng.uniform(-0.1, 0.1))
                value += small if host.name == "web-1" else 0.0
                warming = host.started_at > at - policy.warmup
                if kind < 0.05:
                    counted += 1.0  # no sample
                elif kind < 0.1:
                    samples.append(Sample(host.name, value, at - 60.0))  # stale
                    counted += 1.0
                    carried += value if not warming and host.started_at <= at - 60.0 else 0.0
                elif kind < 0.13:
                    samples.append(Sample(host.name, value, at + 10.0))  # late
                    counted += 1.0
                    carried += 0.0 if warming else value
                elif kind < 0.15:
                    samples.append(Sample(host.name, math.nan, at))
                    counted += 1.0
                else:
                    samples.append(Sample(host.name, value, at))
                    counted += 1.0 if warming else value
                    carried += 0.0 if warming else value
                    values += [] if warming else [value]
            size = tier.size
            before = tier.history
            cooling = (before.last_direction is Direction.OUT and before.last_action_at is not None
                       and at - before.last_action_at < policy.cooldown)
            decision, tier.history = decide(policy, size=size, min=low, max=high, hosts=hosts, samples=samples,
                                            now=at, history=tier.history)
            assert low <= decision.size <= high, (seed, n, decision)
            if decision.rule in (Rule.SCALE_IN, Rule.TO_TARGET):
                assert max(low, 1) <= decision.size < size  # possibly several servers in one action
                # the window's highest recommendation, this period's among them
                assert decision.size == max(r for _, r in tier.history.recommendations)
                # cannot trigger a scale-out, early or not
                assert counted / decision.size < policy.upper * (1 - policy.tolerance), (seed, n, decision)
            if decision.rule is Rule.SCALE_IN:
                scale_ins += 1
                assert counted / size < policy.lower, (seed, n, decision)
            if decision.rule is Rule.TO_TARGET:
                to_target += 1
                assert counted / decision.size <= policy.sizing * (1 - policy.tolerance) + 1e-9, (seed, n, decision)
            if decision.direction is Direction.OUT and decision.rule is not Rule.CLAMPED:
                assert size + policy.step <= decision.size <= size + policy.most_added(size) or decision.size == high
            average = decision.reading.average
            if decision.rule is Rule.HOT:
                hots += 1
                assert max(values) > policy.hot_line and decision.reading.warming == 0, (seed, n, decision)
                assert decision.reading.hottest == max(values) and not cooling, (seed, n, decision)
                assert decision.reading.average is not None and decision.reading.average >= policy.lower
            elif (values and max(values) > policy.hot_line and decision.reading.warming == 0 and size == len(hosts)
                  and not cooling and (decision.reading.average or 0.0) >= policy.lower):
                # a hot server on a warmed-up, busy tier never lets it hold in range or scale in: the average's
                # scale-out rules (or their unconfirmed check) come first, then the hot rule
                assert decision.rule in (Rule.AT_MAX, Rule.CLAMPED, Rule.SCALE_OUT, Rule.PREDICTED,
                                         Rule.UNCONFIRMED), (seed, n, decision)
            if decision.rule is Rule.SCALE_OUT:
                scale_outs += 1
                assert average is not None and average > policy.out_line
                if policy.trend == 0:  # no projection: the load counted with stale and late values carries it
                    assert carried / size > policy.sizing * (1 + policy.tolerance) - 1e-9, (seed, n, decision)
            if decision.rule is Rule.PREDICTED:
                predicted += 1
                assert average is not None and policy.trend > 0
                assert average <= max(policy.out_line, policy.upper * (1 - policy.tolerance)), (seed, n, decision)
            if decision.rule is Rule.HEADROOM:  # above the HPA's line, not above early, with a line under early
                assert average is not None and policy.out_line < average <= policy.upper * (1 - policy.tolerance)
                assert policy.trend > 0 and decision.reading.warming == 0, (seed, n, decision)
            for i in range(size + 1, decision.size + 1):
                tier.started[f"web-{i}"] = at
            for i in range(decision.size + 1, size + 1):
                tier.started.pop(f"web-{i}", None)
            tier.size = decision.size
    # the trend's scale-out is rare now that the average's line is target plus tolerance, at most upper (see the
    # ramps below for it alone)
    assert min(scale_ins, to_target, scale_outs) > 20 and hots > 5 and predicted > 2, (scale_ins, to_target, scale_outs,
                                                                                predicted, hots)


def test_steep_ramps_scale_out_on_the_trend_or_the_line_and_never_after_the_average_crosses_early() -> None:
    """Seeded ramps from 0.41–0.45, 0.025–0.045 a period: the first action is a scale-out, by the trend (from below
    0.66, or from within the headroom above it), or by the average above 0.66 before the tier has a line; either
    before the average reaches the early line."""
    predicted = 0
    for seed in range(100):
        rng = random.Random(seed)
        start, step = rng.uniform(0.41, 0.45), rng.uniform(0.025, 0.045)
        decisions = Tier(4, max=20).run(rising(start, step, 20))
        first = next(d for d in decisions if d.direction is not Direction.HOLD)
        average = first.reading.average
        assert average is not None and first.direction is Direction.OUT, (seed, first)
        assert average <= POLICY.upper * (1 - POLICY.tolerance), (seed, first)
        if first.rule is Rule.PREDICTED:
            predicted += 1
        else:
            assert first.rule is Rule.SCALE_OUT and average > POLICY.out_line, (seed, first)
    # few: the trend goes first only where a ramp is still below 0.66 after MIN_POINTS periods yet projects above
    # 0.72, i.e. rises by more than 0.06 a warmup (3 of these 100 seeds)
    assert 0 < predicted < 100, predicted


def test_a_noisy_flat_trace_within_the_tolerance_of_target_never_acts() -> None:
    """Each server within 0.05 of target 0.6: the average never leaves (0.54, 0.66). The same tier with 0.15 of
    noise crosses the HPA's line (0.66) now and then, but its trend stays level, under early (0.72): it has
    headroom and holds. Without a trend (``trend=0``) the same noise scales it out above 0.66."""
    def noisy(spread: float) -> list[tuple[float, Readings]]:
        rng = random.Random(7)
        return [(float(n * PERIOD), [None if rng.random() < 0.2 else 0.6 + rng.uniform(-spread, spread)
                                     for _ in range(5)]) for n in range(400)]

    tier = Tier(5, policy=EAGER)
    decisions = tier.run(noisy(0.05))
    assert {d.direction for d in decisions} == {Direction.HOLD}
    assert tier.size == 5
    wide = Tier(5, policy=EAGER).run(noisy(0.15))
    assert {d.direction for d in wide} == {Direction.HOLD}
    assert sum(d.rule is Rule.HEADROOM for d in wide) > 5  # the average above 0.66, the line under 0.72
    blind = Tier(5, policy=EAGER.model_copy(update={"trend": 0.0})).run(noisy(0.15))
    assert {d.rule for d in blind if d.direction is Direction.OUT} == {Rule.SCALE_OUT}


def test_missing_samples_never_scale_in_however_low_the_rest() -> None:
    rng = random.Random(11)
    for _ in range(50):
        size = rng.randint(2, 10)
        readers = rng.randint(0, math.ceil(0.5 * size) - 1)  # fewer than min_fresh 0.5 of the tier
        tier = Tier(size, max=10, policy=EAGER)
        decisions = tier.run(every(0, 300, [0.0] * readers + [None] * (size - readers)))
        assert all(d.direction is not Direction.IN for d in decisions), (size, readers)
