"""XenServer at scale (issue 18 §4), on the XenAPI simulator (tests/xensim), which runs in this process; crane and
the baseline run as whole processes, taken in turn:

* create ``--vms`` halted VMs on ``--networks`` networks from an empty pool (the pool the plans read);
* the no-op plan's round trips to the pool, per wire method, for that stack and for a stack of ``--create`` VMs:
  the same count whatever the stack's size (one ``get_all_records`` per class, never one call per object);
* the no-op plan of ``--vms`` VMs against a plain SDK script reading the same classes
  (bench/baselines/xenapi_read.py), ``--repeat`` pairs in turn, the median of the pairs' ratios (target ≤ 1.5×);
* create ``--create`` running VMs (clone, provision, start: three async tasks each) on a fresh pool with the
  endpoint's ``max_tasks`` = ``--max-tasks``, then = 1: the most tasks pending at once, as the simulator saw them
  (target: exactly the limit), and the time.

    python bench/xenapi.py                      # 2,000 VMs; 200 created with max_tasks 8 and 1 (about 5 minutes)
    python bench/xenapi.py --markdown           # the table for docs/benchmarks.md
    python bench/xenapi.py --vms 20 --create 6 --max-tasks 2 --repeat 1    # a smoke run (tests/bench)

Every async task takes ``--task-duration`` seconds of the simulator's (real) time; its task workers are never the
limit (more of them than ``max_tasks``), so what the pool sees at once is what crane sends at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import CRANE, PY, Run, timed, timed_in_turn
from bench.tables import render
from crane_iac.providers.xenapi.records import CLASSES
from tests.xensim import HostSpec, PoolSpec, Simulator, SRSpec

HERE = Path(__file__).resolve().parent
#: the environment variable crane.toml names for the password, and the baseline reads
PASSWORD_VAR = "XEN_PASSWORD"
CONFIG = """[stacks.big]
file = "stacks/big.py"
provider = "xenapi"
uri = "{url}"
username = "{username}"
password_env = "{var}"
max_tasks = {max_tasks}
"""
STACK = """
from crane_iac import VM, Network

nets = [Network(f"net-{{n}}", mode="isolated", ipv4=f"10.{{n // 250}}.{{n % 250}}.0/24") for n in range({networks})]
for i in range({vms}):
    VM(f"vm-{{i}}", vcpus=1, memory_mib=128, max_memory_mib=256, running={running}, networks=[nets[i % len(nets)]])
"""
#: what one VM of the template takes (TemplateSpec's default disk) and needs to start, for sizing the pool
DISK_GIB, VM_MIB = 10, 128


class TaskWatch:
    """The simulator's tasks as they come and go: how many were pending at once at most (``peak``), and how many
    there were. It wraps the simulator's task runner (submit, and the step that ends a task: success, failure or
    cancel), so it counts what the pool saw, not what crane says it sent."""

    def __init__(self, sim: Simulator) -> None:
        runner = sim.world.tasks
        self.pending = self.peak = self.total = 0
        lock = threading.Lock()
        submit, finish = runner.submit, runner._finish

        def counted_submit(*args: Any, **kwargs: Any) -> str:
            with lock:
                self.pending += 1
                self.total += 1
                self.peak = max(self.peak, self.pending)
            try:
                return submit(*args, **kwargs)
            except BaseException:
                with lock:
                    self.pending -= 1
                raise

        def counted_finish(*args: Any, **kwargs: Any) -> None:
            finish(*args, **kwargs)
            with lock:
                self.pending -= 1

        runner.submit = counted_submit  # type: ignore[method-assign]
        runner._finish = counted_finish  # type: ignore[method-assign]


@contextmanager
def pool(root: Path, *, vms: int, networks: int, running: bool, max_tasks: int,
         task_duration: float) -> Iterator[Simulator]:
    """A started simulator sized for ``vms`` VMs (disk space; memory for the running ones) and, in ``root``, a crane
    project whose stack declares them on an endpoint of that pool; the password in ``PASSWORD_VAR``."""
    memory = max(65536, 1024 + VM_MIB * vms * 2) if running else 65536
    spec = PoolSpec(hosts=[HostSpec("xs1", memory_mib=memory)], srs=[SRSpec("Local storage",
                                                                            size_gib=1024 + DISK_GIB * vms)],
                    task_duration=task_duration, task_workers=max(32, 4 * max_tasks))
    with Simulator(spec) as sim:
        (root / "stacks").mkdir(parents=True)
        (root / "crane.toml").write_text(CONFIG.format(url=sim.url, username=sim.username, var=PASSWORD_VAR,
                                                       max_tasks=max_tasks))
        (root / "stacks" / "big.py").write_text(STACK.format(vms=vms, networks=networks, running=running))
        os.environ[PASSWORD_VAR] = sim.password
        try:
            yield sim
        finally:
            os.environ.pop(PASSWORD_VAR, None)


def apply(root: Path, vms: int, networks: int) -> Run:
    run = timed([*CRANE, "apply", "--auto-approve"], root, 1)
    if f"Apply complete: {vms + networks} created" not in run.stdout:
        raise SystemExit(f"the apply did not create the stack:\n{run.stdout[-800:]}")
    return run


def plan_calls(sim: Simulator, root: Path) -> Counter[str]:
    """The round trips of one no-op plan, per wire method."""
    sim.reset_counts()
    run = timed([*CRANE, "plan", "--detailed-exitcode"], root, 1)
    if "No changes." not in run.stdout:
        raise SystemExit(f"the re-plan is not a no-op:\n{run.stdout[-800:]}")
    return sim.calls


def baseline(sim: Simulator) -> list[str]:
    return [PY, str(HERE / "baselines" / "xenapi_read.py"), sim.url, sim.username, *CLASSES]


@dataclass
class Created:
    """One create of the stack on a fresh pool: its run, the tasks the pool saw (peak pending and total), and the
    round trips of the no-op plan after it."""

    run: Run
    peak: int
    tasks: int
    plan_calls: Counter[str]


def create_watched(root: Path, *, vms: int, networks: int, max_tasks: int, task_duration: float) -> Created:
    with pool(root, vms=vms, networks=networks, running=True, max_tasks=max_tasks,
              task_duration=task_duration) as sim:
        watch = TaskWatch(sim)
        run = apply(root, vms, networks)
        return Created(run, watch.peak, watch.total, plan_calls(sim, root))


@dataclass
class Results:
    vms: int
    networks: int
    create: Run
    big_calls: Counter[str]
    baseline_calls: Counter[str]
    plan: Run
    base: Run
    ratios: list[float]
    small: int
    max_tasks: int
    parallel: Created
    serial: Created


def measure(tmp: Path, *, vms: int, networks: int, small: int, max_tasks: int, repeat: int,
            task_duration: float) -> Results:
    with pool(tmp / "big", vms=vms, networks=networks, running=False, max_tasks=max_tasks,
              task_duration=task_duration) as sim:
        create = apply(tmp / "big", vms, networks)
        big_calls = plan_calls(sim, tmp / "big")
        sim.reset_counts()
        timed(baseline(sim), tmp, 1)
        baseline_calls = sim.calls
        plan, base, ratios = timed_in_turn([*CRANE, "plan", "--detailed-exitcode"], baseline(sim), tmp / "big",
                                           repeat)
        if "No changes." not in plan.stdout:
            raise SystemExit(f"the re-plan is not a no-op:\n{plan.stdout[-800:]}")
    small_networks = max(1, min(networks, small // 20))
    parallel = create_watched(tmp / "parallel", vms=small, networks=small_networks, max_tasks=max_tasks,
                              task_duration=task_duration)
    serial = create_watched(tmp / "serial", vms=small, networks=small_networks, max_tasks=1,
                            task_duration=task_duration)
    return Results(vms, networks, create, big_calls, baseline_calls, plan, base, ratios, small, max_tasks, parallel,
                   serial)


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def rows(r: Results) -> list[list[str]]:
    big, small = sum(r.big_calls.values()), sum(r.parallel.plan_calls.values())
    ratio = statistics.median(r.ratios)
    p, s = r.parallel, r.serial
    return [
        [f"create {r.vms:,} halted VMs + {r.networks} networks from empty", f"{r.create.seconds:.1f} s", "", "", "",
         verdict(None)],
        [f"no-op plan's round trips, {r.vms:,} VMs + {r.networks} networks", str(big),
         f"constant: as for {r.small:,} VMs", f"{small} ({r.small:,} VMs); the script {sum(r.baseline_calls.values())}",
         "", verdict(big == small and r.big_calls == r.parallel.plan_calls)],
        [f"no-op plan, {r.vms:,} VMs + {r.networks} networks", f"{r.plan.seconds:.2f} s", "≤ 1.5× baseline",
         f"{r.base.seconds:.2f} s", f"{ratio:.2f}× (median of {len(r.ratios)} pairs' ratios, "
         f"{min(r.ratios):.2f}–{max(r.ratios):.2f}×)", verdict(ratio <= 1.5)],
        [f"create {r.small:,} running VMs, max_tasks = {r.max_tasks}", f"{p.run.seconds:.1f} s; at most {p.peak} "
         f"of {p.tasks} tasks pending at once", f"tasks in parallel up to max_tasks ({r.max_tasks})",
         f"{s.run.seconds:.1f} s with max_tasks = 1 (at most {s.peak} at once)",
         f"{s.run.seconds / p.run.seconds:.1f}× faster", verdict(p.peak == r.max_tasks and s.peak == 1)],
    ]


def calls_table(r: Results, markdown: bool) -> str:
    methods = sorted(set(r.big_calls) | set(r.parallel.plan_calls) | set(r.baseline_calls))
    body = [[f"`{m}`" if markdown else m, str(r.big_calls[m]), str(r.parallel.plan_calls[m]),
             str(r.baseline_calls[m])] for m in methods]
    body.append(["all", str(sum(r.big_calls.values())), str(sum(r.parallel.plan_calls.values())),
                 str(sum(r.baseline_calls.values()))])
    return render(["round trips of a no-op plan", f"{r.vms:,} VMs", f"{r.small:,} VMs", "the SDK script"], body,
                  markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--create", type=int, default=200, help="VMs created with max_tasks and serially")
    parser.add_argument("--max-tasks", type=int, default=8, help="the endpoint's max_tasks (crane's default: 8)")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of the no-op plan and the baseline")
    parser.add_argument("--task-duration", type=float, default=0.05, help="seconds each simulated task takes")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crane-bench-xen-") as tmp:
        results = measure(Path(tmp), vms=args.vms, networks=args.networks, small=args.create,
                          max_tasks=args.max_tasks, repeat=args.repeat, task_duration=args.task_duration)
    print(render(["measure", "crane", "target", "baseline", "ratio", ""], rows(results), args.markdown))
    print()
    print(calls_table(results, args.markdown))


if __name__ == "__main__":
    main()
