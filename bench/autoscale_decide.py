"""One autoscaling period for 1,000 app domains of 10 web servers: the CPU time of ``decide`` alone.

    python bench/autoscale_decide.py [--domains 1000] [--servers 10] [--repeat 5]

Each domain has its own level of memory use (from well below ``lower`` to above ``upper``, so every rule runs), a
server in twenty without a sample and one in fifty stale, and a History of 20 earlier periods: a full
stabilisation window (low enough to let a low domain scale in) and a full trend window (its level with noise, so
every period fits a line through 20 readings). The samples are built before the clock starts; the figure is the
median over ``--repeat`` periods of the process's CPU time (time.process_time) for deciding every domain once.
Prints bench/run.py's table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import row
from crane_iac.autoscaler.decision import Decision, History, Host, Sample, decide
from crane_iac.autoscaler.policy import ScalingPolicy

PERIOD = 15.0
TARGET = 1.0  # CPU seconds for one period of 1,000 domains × 10 servers


def period_samples(rng: random.Random, hosts: list[Host], level: float, at: float) -> list[Sample]:
    samples = []
    for host in hosts:
        chance = rng.random()
        if chance < 0.05:
            continue
        taken = at - 120.0 if chance < 0.07 else at - rng.uniform(0.0, 10.0)
        samples.append(Sample(host.name, max(0.0, level + rng.uniform(-0.05, 0.05)), taken))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    policy = ScalingPolicy()
    hosts = [[Host(f"d{d}-web-{i}", -3600.0) for i in range(1, args.servers + 1)] for d in range(args.domains)]
    levels = [rng.uniform(0.05, 0.95) for _ in range(args.domains)]
    histories = [History(recommendations=tuple((-PERIOD * k, args.servers - 1) for k in range(20, 0, -1)),
                         readings=tuple((-PERIOD * k, level + rng.uniform(-0.05, 0.05), args.servers)
                                        for k in range(20, 0, -1)))
                 for level in levels]
    figures: list[float] = []
    rules: Counter[str] = Counter()
    for n in range(args.repeat):
        at = n * PERIOD
        periods = [period_samples(rng, hosts[d], levels[d], at) for d in range(args.domains)]
        decisions: list[Decision] = []
        started = time.process_time()
        for d in range(args.domains):
            decision, histories[d] = decide(policy, size=args.servers, min=1, max=args.servers * 2, hosts=hosts[d],
                                            samples=periods[d], now=at, history=histories[d])
            decisions.append(decision)
        figures.append(time.process_time() - started)
        rules.update(d.rule.value for d in decisions)
    cpu = statistics.median(figures)
    what = f"one period, {args.domains:,} domains × {args.servers} servers: CPU of `decide`"
    figure = f"{cpu:.3f} s ({cpu / args.domains * 1e6:.0f} µs a domain)"
    print("| measure | figure | target | baseline | of target | |\n|---|---|---|---|---|---|")
    print(row(what, figure, f"≤ {TARGET:g} s", "", f"{cpu / TARGET:.0%}", cpu <= TARGET))
    print(f"\nrules over {args.repeat} periods: " + ", ".join(f"{r} {c}" for r, c in rules.most_common()))


if __name__ == "__main__":
    main()
