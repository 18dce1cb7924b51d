"""ScalingPolicy: its defaults, and every mistake in it reported at once, in crane's words, when the stack loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from crane_iac.autoscaler.policy import ScalingPolicy
from crane_iac.errors import DiagnosticsError
from crane_iac.loader import load_stack


def problems(**fields: object) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        ScalingPolicy(**fields)
    return [d.summary for d in caught.value.diagnostics]


def test_the_defaults_are_a_valid_memory_policy() -> None:
    policy = ScalingPolicy()
    assert (policy.signal, policy.lower, policy.upper, policy.step, policy.max_step) == ("memory", 0.4, 0.8, 1, None)
    assert policy.capacity is None
    assert policy.utilisation(0.5) == 0.5
    assert (policy.target, policy.sizing, policy.tolerance, policy.trend) == (None, pytest.approx(0.6), 0.1, 300.0)
    assert (policy.cooldown, policy.scale_in_cooldown, policy.stabilisation) == (300.0, 300.0, 300.0)
    assert policy.scale_in_to_target is True
    assert (policy.hot, policy.hot_line) == (None, pytest.approx(0.9))  # midway between upper and 1
    assert policy.out_line == pytest.approx(0.66)  # target 0.6 plus 10 %


def test_target_defaults_to_midway_between_lower_and_upper_and_must_lie_between_them() -> None:
    assert ScalingPolicy(lower=0.3, upper=0.7).sizing == pytest.approx(0.5)
    assert ScalingPolicy(lower=0.3, upper=0.7, target=0.65).sizing == 0.65
    assert problems(target=0.9) == ["ScalingPolicy: target (0.9) must be between lower (0.4) and upper (0.8)"]
    assert problems(target=0.4) == ["ScalingPolicy: target (0.4) must be between lower (0.4) and upper (0.8)"]
    assert problems(lower=0.8, upper=0.6, target=0.7, step=3, max_step=2) == [
        "ScalingPolicy: lower (0.8) must be below upper (0.6)",
        "ScalingPolicy: target (0.7) must be between lower (0.8) and upper (0.6)",
        "ScalingPolicy: max_step (2) must be at least step (3)",
    ]



def test_a_scale_out_adds_at_most_max_step_or_without_it_doubles_the_tier_by_at_least_4() -> None:
    hpa = ScalingPolicy()
    assert [hpa.most_added(n) for n in (1, 3, 4, 5, 12)] == [4, 4, 4, 5, 12]
    capped = ScalingPolicy(max_step=2)
    assert [capped.most_added(n) for n in (1, 5, 12)] == [2, 2, 2]  # a max_step the user set is a hard cap


def test_the_scale_out_line_is_target_plus_tolerance_at_most_upper() -> None:
    assert ScalingPolicy(lower=0.3, upper=0.7).out_line == pytest.approx(0.55)
    assert ScalingPolicy(target=0.75).out_line == 0.8  # 0.825 would be above upper: upper
    assert ScalingPolicy(tolerance=0.0).out_line == pytest.approx(0.6)


def test_hot_defaults_midway_between_upper_and_1_and_must_be_above_upper() -> None:
    assert ScalingPolicy(upper=0.6, lower=0.2).hot_line == pytest.approx(0.8)
    assert ScalingPolicy(hot=0.95).hot_line == 0.95
    assert problems(hot=0.8) == [
        "ScalingPolicy: hot (0.8) must be above upper (0.8): a server above it is hotter than the tier's SLO line"]
    assert problems(hot=0.0) == ["ScalingPolicy: hot: must be greater than 0, got 0.0"]


def test_thresholds_out_of_order_and_a_max_step_below_step_are_reported_together() -> None:
    assert problems(lower=0.8, upper=0.6, step=3, max_step=2) == [
        "ScalingPolicy: lower (0.8) must be below upper (0.6)",
        "ScalingPolicy: max_step (2) must be at least step (3)",
    ]
    assert problems(lower=0.5, upper=0.5) == ["ScalingPolicy: lower (0.5) must be below upper (0.5)"]


def test_bad_fields_are_named_with_what_was_given() -> None:
    assert problems(step=0, upper=1.5, signal="disk", cooldown=-1) == [
        "ScalingPolicy: signal: expected one of 'memory', 'cpu' or 'sessions', got 'disk'",
        "ScalingPolicy: upper: must be at most 1, got 1.5",
        "ScalingPolicy: step: must be at least 1, got 0",
        "ScalingPolicy: cooldown: must be at least 0, got -1",
    ]
    assert problems(target=0.0, tolerance=1.0, trend=-60.0, scale_in_cooldown=-1.0) == [
        "ScalingPolicy: target: must be greater than 0, got 0.0",
        "ScalingPolicy: tolerance: must be less than 1, got 1.0",
        "ScalingPolicy: trend: must be at least 0, got -60.0",
        "ScalingPolicy: scale_in_cooldown: must be at least 0, got -1.0",
    ]
    assert problems(taget=0.6) == ["ScalingPolicy: taget: unknown field; did you mean target?"]
    assert problems(upper="0.8") == ["ScalingPolicy: upper: expected a float, got str '0.8'"]  # strict: no coercion
    assert problems(step=True) == ["ScalingPolicy: step: expected an int, got bool True"]
    assert problems(uper=0.7) == ["ScalingPolicy: uper: unknown field; did you mean upper?"]


def test_sessions_need_a_capacity_and_only_sessions_take_one() -> None:
    assert problems(signal="sessions") == [
        "ScalingPolicy: signal 'sessions' needs capacity: the sessions per second one web server carries"]
    assert problems(signal="cpu", capacity=50.0) == [
        "ScalingPolicy: capacity is only for signal 'sessions' (signal 'cpu' is already a fraction)"]
    policy = ScalingPolicy(signal="sessions", capacity=200.0)
    assert policy.utilisation(150.0) == 0.75


def test_the_policy_is_a_frozen_value() -> None:
    policy = ScalingPolicy(upper=0.7)
    with pytest.raises(Exception, match="frozen"):
        policy.upper = 0.9  # type: ignore[misc]
    assert policy == ScalingPolicy(upper=0.7)


def test_a_bad_policy_is_a_load_error_at_the_stacks_line(tmp_path: Path) -> None:
    stack = tmp_path / "stack.py"
    stack.write_text("from crane_iac.autoscaler.policy import ScalingPolicy\n\n"
                     "policy = ScalingPolicy(lower=0.8, upper=0.6)\n")
    with pytest.raises(DiagnosticsError) as caught:
        load_stack(stack)
    assert str(caught.value) == f"error: {stack}:3: ScalingPolicy: lower (0.8) must be below upper (0.6)"
