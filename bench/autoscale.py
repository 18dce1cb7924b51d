"""Autoscaling policies replayed through one simulated web tier: CRANE's plain two-threshold rule, an HPA-style
rule and crane's controller (the real ``decide``), on five synthetic traces with fixed seeds.

    python bench/autoscale.py [--markdown] [--what-if] [--seed 0] [--period 15] [--boot 90] [--hpa-target 0.6]
    python bench/autoscale.py --set tuning|held-out|both [--markdown] [--jobs N] [--per-family 30] [--oracle]

Prints, per trace and policy, the time in SLO violation (the ready servers' average above upper, or any server
above 95 %), the server-hours (a server counts from its creation, booting or not) and the scaling actions; then
the issue's targets for crane's controller, met or not, trace by trace, with the figures that explain a miss;
``--what-if`` adds crane's decision with one of its choices changed at a time, to show what each buys; last, the
CPU time of one period for 1,000 app domains of 10 servers (bench/autoscale_decide.py). The model is
bench/autoscale_sim.

``--set`` runs the evaluation on many traces instead (bench/autoscale_sim/families.py: 540 traces in 18 families,
split once by seed into a tuning set and a held-out set; evaluation.py, report.py): per family and overall, each
policy's median and 90th percentile, the share of traces on which crane is at least as good as each reference, the
issue's targets with verdicts, the no-cliff check and the traces where crane spent more SLO time than the HPA-style
rule, with the figures. ``--jobs`` worker processes (default: the CPU count); the wall time is printed.
``--oracle`` adds, per set, a clairvoyant bound (bench/autoscale_sim/oracle.py): on how many traces any schedule
that knows the future could take fewer actions than the plain rule within (ii)'s SLO time and a server-hour
budget, so an upper bound on what any policy can reach; and the no-cliff check on the references themselves.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.autoscale_sim.evaluation import LOWER, UPPER, Outcome, evaluate_at
from bench.autoscale_sim.families import PER_FAMILY, index
from bench.autoscale_sim.oracle import Reach, reach_at
from bench.autoscale_sim.policies import CraneController, Fixed, HpaRule, PlainRule
from bench.autoscale_sim.report import reach_report, report
from bench.autoscale_sim.targets import Verdict, deadband_hours, judge, late_scale_outs
from bench.autoscale_sim.traces import Trace, traces
from bench.autoscale_sim.web_tier import Autoscaler, Noise, Run, WebTier, simulate
from bench.tables import render
from crane_iac.autoscaler.policy import ScalingPolicy

HERE = Path(__file__).resolve().parent
#: crane's choices, one changed at a time (the SLO line stays at upper 0.8)
WHAT_IFS = {"no early scale-out (trend 0)": {"trend": 0.0},
            "no scale-in-to-target (the issue's rules)": {"scale_in_to_target": False},
            "scale_in_cooldown 60 s (the default before issue 19)": {"scale_in_cooldown": 60.0},
            "target 0.55": {"target": 0.55},
            "target 0.65": {"target": 0.65}}


def verdict(v: Verdict) -> str:
    return f"{v.figure}: " + ("—" if v.ok is None else "met" if v.ok else "**not met**")


def crane_policy(tier: WebTier) -> ScalingPolicy:
    """(iii)'s policy: the same upper and lower as (i), warmup = the boot delay, the rest crane's defaults."""
    return ScalingPolicy(upper=UPPER, lower=LOWER, warmup=tier.boot)


def policies(tier: WebTier, hpa_target: float) -> list[Autoscaler]:
    return [PlainRule(upper=UPPER, lower=LOWER, min=tier.min, max=tier.max),
            HpaRule(target=hpa_target, min=tier.min, max=tier.max),
            CraneController(crane_policy(tier), min=tier.min, max=tier.max)]


def what_ifs(tier: WebTier) -> list[Autoscaler]:
    """crane's decision with one of WHAT_IFS' changes to its policy each."""
    changed = []
    for what, change in WHAT_IFS.items():
        controller = CraneController(crane_policy(tier).model_copy(update=change), min=tier.min, max=tier.max)
        controller.name = f"crane, {what} (what-if)"
        changed.append(controller)
    return changed


def figures(run: Run) -> list[str]:
    return [run.trace.name, run.policy, f"{run.slo_minutes:.2f}",
            f"{run.over_upper_minutes:.2f} / {run.over_server_minutes:.2f}", f"{run.server_hours:.1f}",
            f"{run.actions} ({run.outs} out, {run.ins} in)"]


RESULT_HEADER = ["trace", "policy", "SLO violation (min)", "avg > upper / server > 95 % (min)", "server-hours",
                 "actions"]


def explain(trace: Trace, runs: dict[str, Run], controller: CraneController, tier: WebTier, noise: Noise,
            verdicts: list[Verdict]) -> list[str]:
    """A sentence per missed target, with the figures from this trace's runs."""
    crane, plain, hpa = runs["crane"], runs["plain two-threshold"], runs["HPA-style"]
    rules = Counter(d.rule.value for d, m in zip(controller.decisions, crane.moments, strict=True)
                    if m.over_upper or m.over_server)
    trim = controller.policy.sizing * (1 - controller.policy.tolerance)
    lines = []
    for v in verdicts:
        if v.ok is not False:
            continue
        if v.target.startswith("SLO"):
            late = late_scale_outs(crane, tier.boot)
            lines.append(f"{trace.name}: SLO {crane.slo_minutes - hpa.slo_minutes:+.2f} min over (ii). crane scaled "
                         f"out {late.outs} times, {late.decided_in_violation} of them on a period already in "
                         f"violation; {late.waiting_minutes:.2f} of its {late.minutes:.2f} violating minutes fall "
                         f"between such a decision and its servers taking load {tier.boot:g} s later; crane's rules "
                         f"in its violating periods: " + ", ".join(f"{rule} {n}" for rule, n in rules.most_common()))
        elif v.target.startswith("server-hours"):
            extra = deadband_hours(crane, hpa, 0.0, trim)
            lines.append(f"{trace.name}: server-hours {v.figure.split('(')[-1].rstrip(')')} over (ii). In the "
                         f"periods where crane's average sat below {trim:.2f} (target less tolerance: servers it "
                         f"had not shed yet), it ran {extra:.1f} server-hours more than (ii) at the same moments")
        elif v.target.startswith("fewer"):
            fixed = simulate(trace, Fixed(), tier, noise)
            shed = "; a scale-in may remove several servers" if crane.ins else ""
            lines.append(f"{trace.name}: crane took {crane.actions} action{'s' if crane.actions != 1 else ''} "
                         f"({crane.outs} out, {crane.ins} in{shed}), (i) {plain.actions}; a tier that never acts "
                         f"would have spent {fixed.slo_minutes:.2f} min in SLO violation here ((ii): "
                         f"{hpa.slo_minutes:.2f})")
        else:
            lines.append(f"{trace.name}: {v.target}: {v.figure}")
    return lines


def cpu_figure() -> tuple[str, str, str, str]:
    """bench/autoscale_decide.py's row: (what, figure, target, verdict)."""
    out = subprocess.run([sys.executable, str(HERE / "autoscale_decide.py")], capture_output=True, text=True,
                         check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("| one period"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    return cells[0], cells[1], cells[2], cells[5]


def many_traces(which: str, jobs: int, per_family: int, markdown: bool, oracle: bool = False) -> None:
    """The evaluation on the families' traces: every trace of ``which`` set through every policy, ``jobs`` at once
    (the 24-hour traces first, so that no worker is left with one at the end), then one report per set; with
    ``oracle``, each trace's clairvoyant bound and the references' own no-cliff figures too (oracle.py)."""
    from multiprocessing import Pool

    started = time.perf_counter()
    chosen = sorted(index(which, per_family), key=lambda job: job[0] != "diurnal-weekly")
    work: Callable[[tuple[str, int]], tuple[Outcome, Reach | None]] = reach_at if oracle else _evaluated
    if jobs > 1:
        with Pool(jobs) as pool:
            results = list(pool.imap_unordered(work, chosen))
    else:
        results = [work(job) for job in chosen]
    results.sort(key=lambda result: result[0].seed)
    wall = time.perf_counter() - started
    sets = {"tuning": [False], "held-out": [True], "both": [False, True]}[which]
    for held in sets:
        outcomes = [o for o, _ in results if o.held_out == held]
        title = "Held-out set" if held else "Tuning set"
        print(report(title, outcomes, markdown) + "\n")
        if oracle:
            reaches = [r for o, r in results if o.held_out == held and r is not None]
            print(reach_report(title, outcomes, reaches, markdown) + "\n")
    runs = "8 runs (3 policies, 4 variants of crane, foresight)"
    if oracle:
        runs = "15 runs (those 8, the HPA-style rule's 4 variants, foresight at 3 levels) and the oracle"
    print(f"({len(results)} traces × {runs} in {wall:.0f} s wall with {jobs} job{'s' if jobs != 1 else ''})")


def _evaluated(job: tuple[str, int]) -> tuple[Outcome, Reach | None]:
    return evaluate_at((*job, True)), None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/benchmarks.md)")
    parser.add_argument("--what-if", action="store_true", help="also run crane's decision with one change at a time")
    parser.add_argument("--seed", type=int, default=0, help="shift every trace's seed (0: the docs' run)")
    parser.add_argument("--period", type=float, default=15.0, help="seconds between decisions (and samples)")
    parser.add_argument("--boot", type=float, default=90.0, help="seconds from a server's creation to taking load")
    parser.add_argument("--hpa-target", type=float, default=(UPPER + LOWER) / 2,
                        help="the HPA-style rule's target utilisation (default: the midpoint of lower and upper)")
    parser.add_argument("--set", choices=["tuning", "held-out", "both"],
                        help="evaluate on the trace families' tuning set, held-out set or both, instead")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for --set")
    parser.add_argument("--per-family", type=int, default=PER_FAMILY, help="traces per family for --set")
    parser.add_argument("--oracle", action="store_true",
                        help="with --set: each trace's clairvoyant bound on actions, and the no-cliff check on the "
                             "references (bench/autoscale_sim/oracle.py)")
    args = parser.parse_args()
    if args.oracle and not args.set:
        parser.error("--oracle goes with --set")
    if args.set:
        many_traces(args.set, max(1, args.jobs), args.per_family, args.markdown, args.oracle)
        return
    tier = replace(WebTier(), boot=args.boot, upper=UPPER)
    started = time.process_time()
    results, verdict_rows, whatif_rows, notes = [], [], [], []
    for trace in traces(args.period, seed=args.seed):
        noise = Noise.draw(trace, tier)
        compared = policies(tier, args.hpa_target)
        runs = {p.name: simulate(trace, p, tier, noise) for p in compared}
        controller = compared[-1]
        assert isinstance(controller, CraneController)
        results += [figures(run) for run in runs.values()]
        verdicts = judge(runs["crane"], runs["plain two-threshold"], runs["HPA-style"])
        by_target = {v.target: verdict(v) for v in verdicts}
        verdict_rows.append([trace.name, by_target["fewer actions than (i)"], by_target["SLO time ≤ (ii)"],
                             by_target["server-hours ≤ (ii) + 10 %"], by_target.get("≤ 1 action/h on noisy-flat", "")])
        notes += explain(trace, runs, controller, tier, noise, verdicts)
        if args.what_if:
            for p in what_ifs(tier):
                run = simulate(trace, p, tier, noise)
                missed = [v.target for v in judge(run, runs["plain two-threshold"], runs["HPA-style"]) if v.ok is False]
                whatif_rows.append([*figures(run), ", ".join(missed) or "none"])
    seconds = time.process_time() - started
    policy = crane_policy(tier)
    print(f"Simulated web tier: a decision every {args.period:g} s; a new server takes load {tier.boot:g} s after "
          f"its creation (and costs from creation); a ready server's memory = {tier.base:g} + its share of the load "
          f"× {tier.per_request:g} per req/s (share = load / ready servers × (1 + N(0, {tier.imbalance:g}))) + "
          f"N(0, {tier.jitter:g}), clipped to [0, 1]; {tier.missed:.0%} of samples missed; sizes {tier.min}–"
          f"{tier.max}, each run starting at the size for an average of {tier.start_level:g}. SLO violation: the "
          f"ready servers' average above {tier.upper:g} or one server above {tier.server_slo:g}.\n"
          f"(i) plain: above {UPPER:g} +1, below {LOWER:g} −1, every period. (ii) HPA-style: target "
          f"{args.hpa_target:g}, tolerance 10 %, servers without a sample at 0 (out) / 100 % (in), scale-in to the "
          f"highest recommendation of 300 s, scale-out at once (≤ max(2N, N+4) a period). (iii) crane: "
          f"ScalingPolicy({', '.join(f'{k}={v!r}' for k, v in policy.model_dump().items() if v is not None)}), "
          f"its target midway: {policy.sizing:g}.\n")
    print(render(RESULT_HEADER, results, args.markdown))
    print("\nTargets for crane's controller (iii)\n")
    print(render(["trace", "fewer actions than (i)", "SLO time ≤ (ii)", "server-hours ≤ (ii) + 10 %",
                  "≤ 1 action/h on noisy-flat"], verdict_rows, args.markdown))
    if notes:
        print("\nWhere crane misses:\n" + "\n".join(f"* {n}" for n in notes))
    if whatif_rows:
        print("\nWhat-ifs (crane's policy with one choice changed; the SLO line stays at upper 0.8)\n")
        print(render([*RESULT_HEADER, "targets missed"], whatif_rows, args.markdown))
    what, figure, target, met = cpu_figure()
    print(f"\n{render(['measure', 'figure', 'target', ''], [[what, figure, target, met]], args.markdown)}")
    print(f"\n(simulation: {seconds:.1f} s of CPU)")


if __name__ == "__main__":
    main()
