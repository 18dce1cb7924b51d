"""One trace of the families replayed through every policy: its score per policy, small enough to send back from a
worker process.

The policies: (i) CRANE's plain two-threshold rule (upper 0.8, lower 0.4), (ii) the HPA-style rule (target 0.6),
(iii) crane's decision (``ScalingPolicy(upper=0.8, lower=0.4, warmup=<the trace's boot delay>)``, the rest its
defaults: the operator is assumed to know how long a server takes to boot), as bench/autoscale.py's five traces;
crane again with ``target`` and ``tolerance`` each moved by ±0.05 (``VARIANTS``: the no-cliff check); and the
``Foresight`` reference. Every policy meets the same load, noise and conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.autoscale_sim.families import Case, case
from bench.autoscale_sim.policies import CraneController, Foresight, HpaRule, PlainRule
from bench.autoscale_sim.targets import late_scale_outs
from bench.autoscale_sim.web_tier import Autoscaler, Noise, Run, WebTier, simulate
from crane_iac.autoscaler.policy import ScalingPolicy

UPPER, LOWER = 0.8, 0.4
HPA_TARGET = (UPPER + LOWER) / 2
PLAIN, HPA, CRANE, BOUND = "plain two-threshold", "HPA-style", "crane", "foresight"
#: crane's policy with one of target (default: 0.6, midway) and tolerance (0.1) moved by ±0.05
VARIANTS: dict[str, dict[str, Any]] = {"target 0.55": {"target": 0.55}, "target 0.65": {"target": 0.65},
                                       "tolerance 0.05": {"tolerance": 0.05}, "tolerance 0.15": {"tolerance": 0.15}}


@dataclass(frozen=True, slots=True)
class Score:
    """A run's figures: periods and minutes in SLO violation, server-hours, scaling actions."""

    violating: int
    slo_minutes: float
    server_hours: float
    actions: int

    @classmethod
    def of(cls, run: Run) -> Score:
        violating = sum(m.over_upper or m.over_server for m in run.moments)
        return cls(violating, run.slo_minutes, run.server_hours, run.actions)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One trace's scores by policy (and variant), with what explains crane's SLO minutes: its scale-outs, those
    decided on a period already in violation, and its violating minutes spent waiting for one's servers."""

    family: str
    seed: int
    name: str
    detail: str
    held_out: bool
    scores: dict[str, Score]
    late: tuple[int, int, float]


def crane_policy(tier: WebTier, **change: Any) -> ScalingPolicy:
    return ScalingPolicy(upper=UPPER, lower=LOWER, warmup=tier.boot, **change)


def _policies(one: Case, variants: bool) -> list[Autoscaler]:
    tier, trace = one.tier, one.trace
    compared: list[Autoscaler] = [
        PlainRule(upper=UPPER, lower=LOWER, min=tier.min, max=tier.max),
        HpaRule(target=HPA_TARGET, min=tier.min, max=tier.max),
        CraneController(crane_policy(tier), min=tier.min, max=tier.max),
        Foresight(trace.load, period=trace.period, boot=tier.boot, base=tier.base, per_request=tier.per_request,
                  least=tier.min, most=tier.max)]
    if variants:
        for what, change in VARIANTS.items():
            controller = CraneController(crane_policy(tier, **change), min=tier.min, max=tier.max)
            controller.name = f"crane, {what}"
            compared.append(controller)
    return compared


def evaluate(one: Case, *, variants: bool = True) -> Outcome:
    """``one`` through every policy (and crane's variants unless ``variants`` is False)."""
    noise = Noise.draw(one.trace, one.tier)
    scores, late = {}, (0, 0, 0.0)
    for policy in _policies(one, variants):
        run = simulate(one.trace, policy, one.tier, noise, size=one.size, conditions=one.conditions)
        scores[policy.name] = Score.of(run)
        if policy.name == CRANE:
            waited = late_scale_outs(run, one.tier.boot)
            late = (waited.outs, waited.decided_in_violation, waited.waiting_minutes)
    return Outcome(one.family, one.seed, one.trace.name, one.detail, one.held_out, scores, late)


def evaluate_at(where: tuple[str, int, bool]) -> Outcome:
    """A worker's job: (family, j, variants) → the Outcome (the case is rebuilt from its seed in the worker)."""
    family, j, variants = where
    return evaluate(case(family, j), variants=variants)
