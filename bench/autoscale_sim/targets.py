"""The issue's targets for crane's controller, judged per trace against the two other policies, and the figures
that explain a miss.

  fewer actions      crane takes fewer scaling actions than the plain two-threshold rule (n/a if neither acts)
  SLO                crane's SLO-violation time is no more than the HPA-style rule's
  calm               at most one action an hour on noisy-flat
  server-hours       crane's server-hours no more than 10 % above the HPA-style rule's (fewer is better, so any
                     saving counts as met; the signed difference is shown)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.autoscale_sim.web_tier import Run

HOURS_MARGIN = 0.10
CALM_TRACE = "noisy-flat"
CALM_PER_HOUR = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target on one trace: the figures compared and whether crane meets it (None: does not apply)."""

    target: str
    figure: str
    ok: bool | None


def _violating(run: Run) -> int:
    return sum(m.over_upper or m.over_server for m in run.moments)


def fewer_actions(crane: Run, plain: Run) -> Verdict:
    if crane.actions == plain.actions == 0:
        return Verdict("fewer actions than (i)", "0 = 0 (neither acts)", None)
    sign = "<" if crane.actions < plain.actions else "=" if crane.actions == plain.actions else ">"
    return Verdict("fewer actions than (i)", f"{crane.actions} {sign} {plain.actions}", crane.actions < plain.actions)


def slo_no_worse(crane: Run, hpa: Run) -> Verdict:
    ours, theirs = _violating(crane), _violating(hpa)
    sign = "≤" if ours <= theirs else ">"
    return Verdict("SLO time ≤ (ii)", f"{crane.slo_minutes:.2f} {sign} {hpa.slo_minutes:.2f} min", ours <= theirs)


def calm(crane: Run) -> Verdict | None:
    if crane.trace.name != CALM_TRACE:
        return None
    rate = crane.actions / crane.trace.hours
    return Verdict("≤ 1 action/h on noisy-flat", f"{rate:.2f}/h", rate <= CALM_PER_HOUR)


def server_hours(crane: Run, hpa: Run) -> Verdict:
    change = crane.server_hours / hpa.server_hours - 1.0
    return Verdict("server-hours ≤ (ii) + 10 %", f"{crane.server_hours:.1f} vs {hpa.server_hours:.1f} ({change:+.0%})",
                   change <= HOURS_MARGIN + 1e-12)


def judge(crane: Run, plain: Run, hpa: Run) -> list[Verdict]:
    """Every target that applies to this trace."""
    verdicts = [fewer_actions(crane, plain), slo_no_worse(crane, hpa), server_hours(crane, hpa)]
    quiet = calm(crane)
    return [*verdicts, quiet] if quiet else verdicts


@dataclass(frozen=True, slots=True)
class LateScaleOut:
    """How much of a run's SLO-violation time waits for a scale-out: the scale-outs, those decided on a period
    already in violation, and the violating minutes from a scale-out's decision until its servers take load."""

    outs: int
    decided_in_violation: int
    minutes: float
    waiting_minutes: float


def late_scale_outs(run: Run, boot: float) -> LateScaleOut:
    """Violation within ``boot`` (and the decision's own period) after a scale-out counts as waiting for it."""
    span = math.ceil(boot / run.trace.period)
    last_out: int | None = None
    outs = in_violation = waiting = violating = 0
    for k, m in enumerate(run.moments):
        bad = m.over_upper or m.over_server
        violating += bad
        if m.size > m.servers:
            outs += 1
            in_violation += bad
            last_out = k
        if bad and last_out is not None and k - last_out <= span:
            waiting += 1
    per = run.trace.period / 60.0
    return LateScaleOut(outs, in_violation, violating * per, waiting * per)


def deadband_hours(crane: Run, hpa: Run, lower: float, level: float) -> float:
    """crane's server-hours above the HPA-style rule's in the periods where crane's average sat in [``lower``,
    ``level``): servers a rule aiming at ``level`` would shed and crane had not (yet)."""
    extra = 0
    for ours, theirs in zip(crane.moments, hpa.moments, strict=True):
        if lower <= ours.average < level and ours.servers > theirs.servers:
            extra += ours.servers - theirs.servers
    return extra * crane.trace.period / 3600.0
