"""MPI jobs and Slurm resizing on a real libvirtd (lxc:///system): crane against a plain libvirt-python script.

    sudo python bench/jobs.py [--repeat 3] [--markdown] [--lock /work/wt/real.lock] [--only job|slurm]

Measures, with every object named ``cbj-`` on subnets 10.94.x.0/24 (crane) and 10.95.x.0/24 (baseline):
  1. a whole job, as whole processes: `crane job run pi.toml` in a fresh project whose stack declares a network, a
     storage pool and an MPICluster of 4 nodes (scheduler=None), and whose job file uploads tests/mpi/pi.c, builds
     it with mpicc, runs ``mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8``, fetches pi.out and releases the
     cluster — from nothing to the result here and back to nothing — against bench/baselines/mpijob.py, which does
     the same work with libvirt-python, ssh-keygen and ssh (the same containers, init and files; no Ansible, no
     state); the two alternate, each round a pair, and the ratio is the median of the pairs' ratios. Each step's
     share of crane's time is read from its progress lines (``[k/6] step: ... (X.X s)``), and `crane job show
     --json` must say the job succeeded;
  2. 2 nodes added to a running Slurm cluster (MPICluster scheduler="slurm", `crane apply --var nodes=6` on a
     cluster applied at 4) until Slurm runs a step on both new nodes (``srun -N2 -w node-5,node-6 hostname`` from the
     head, started the moment the apply exits; srun waits for nodes that are configured but not yet responding),
     with the apply's own per-resource seconds (the two containers, the head's configuration run).
With ``--lock FILE`` each round holds an flock on FILE (other users of the real host wait) and starts and stops
libvirtd inside it (scripts/realhost.sh; a daemon already running is used as it is and left so). Needs root. Tears
down whatever it made (containers, networks, pools and their directories, libvirt_lxc's logs), whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libvirt

from bench import measure, sweeping
from bench.measure import CRANE, ENV, MeasureFailed, Proc, median
from bench.tables import render
from crane_iac.errors import CraneError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
URI = "lxc:///system"
PREFIX = "cbj-"  # every object this bench makes is named so; the sweep touches nothing else
SOURCE = REPO / "tests" / "mpi" / "pi.c"
REALHOST_STATE = "/run/crane-bench-jobs-realhost"
COMMAND = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8 > pi.out && cat pi.out"
STEPS = ("cluster", "upload", "build", "run", "fetch", "release")
CONFIG = """[stacks.hpc]
file = "stacks/hpc.py"
uri = "{uri}"
shutdown_timeout = 5
[stacks.hpc.vars]
nodes = {{ type = "int", default = 4 }}
"""
STACK = """from crane_iac import MPICluster, Network, StoragePool, variable

net = Network("{name}-net", mode="isolated", ipv4="{net3}.0/24", dhcp=False)
pool = StoragePool("{name}-pool", path="{pool_dir}")
MPICluster("{name}", network=net, pool=pool, nodes=variable("nodes"), slots_per_node=2, memory_mib=256{extra})
"""
JOB = """command = {command!r}
release = true
[cluster]
name = "{name}"
[program]
files = ["pi.c"]
build = "mpicc -O2 -o pi pi.c"
[outputs]
files = ["pi.out"]
"""
_PROGRESS = re.compile(r"^\[\d+/\d+\] (\w+): .* \((\d+\.\d+) s\)$")
_APPLIED = re.compile(r"^(\S+): (created|updated|deleted|replaced) \((\d+\.\d+)s\)$")
_PI = re.compile(r"^pi = 3\.14159", re.M)


def run(cmd: list[str], cwd: Path, *, timeout: float = 900) -> Proc:
    """Runs ``cmd`` to its end (killed after ``timeout`` seconds), noting when each stdout line arrives; a non-zero
    exit is a failure."""
    return measure.run(cmd, cwd, timeout=timeout)


@dataclass
class Results:
    crane: list[float] = field(default_factory=list)
    crane_steps: list[dict[str, float]] = field(default_factory=list)
    #: the cluster step's resources as its apply reports them (``configuration.head``, ``container.node-1``, ...)
    crane_parts: list[dict[str, float]] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    base_phases: list[dict[str, float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    grow_apply: list[float] = field(default_factory=list)  # `crane apply --var nodes=6`, whole process
    grow_ready: list[float] = field(default_factory=list)  # from its start until srun ran on both new nodes
    grow_steps: list[dict[str, float]] = field(default_factory=list)
    srun_floor: list[float] = field(default_factory=list)  # the same srun on two nodes that were there
    cold_slurm: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# the real host, held a round at a time


@contextlib.contextmanager
def real_host(lock: Path | None) -> Iterator[None]:
    """The real libvirtd for one round: the flock on ``lock`` (if given) held throughout, libvirtd started by
    scripts/realhost.sh and stopped by it after (only if it started it), and the sweep of ``cbj-`` both ends."""
    handle = lock.open("a") if lock else None
    try:
        if handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
        env = {**os.environ, "CRANE_REALHOST_STATE": REALHOST_STATE}
        host = subprocess.run([str(REPO / "scripts" / "realhost.sh"), "start"], capture_output=True, text=True,
                              env=env)
        if host.returncode != 0:
            raise MeasureFailed(f"no real hypervisor: {host.stdout.strip()[-600:]}")
        try:
            sweep()
            yield
        finally:
            try:
                left = sweep()
                if left:
                    raise MeasureFailed(f"teardown left these behind (the sweep removed them): {', '.join(left)}")
            finally:
                subprocess.run([str(REPO / "scripts" / "realhost.sh"), "stop"], capture_output=True, env=env)
    finally:
        if handle:
            handle.close()  # releases the flock


def sweep(prefix: str = PREFIX) -> list[str]:
    """What this bench left on the endpoint under ``prefix``, destroyed (bench/sweeping.py); what it removed."""
    return sweeping.sweep(URI, prefix)


def project(tmp: Path, name: str, net3: str, *, slurm: bool) -> Path:
    root = tmp / name
    (root / "stacks").mkdir(parents=True)
    (root / "crane.toml").write_text(CONFIG.format(uri=URI))
    extra = ', scheduler="slurm"' if slurm else ""
    (root / "stacks" / "hpc.py").write_text(STACK.format(name=name, net3=net3, pool_dir=tmp / f"{name}-pool",
                                                         extra=extra))
    return root


def crane_down(root: Path, *args: str) -> None:
    if (root / ".crane").exists():
        subprocess.run([*CRANE, "destroy", "--auto-approve", *args], cwd=root, env=ENV, capture_output=True,
                       timeout=600)


# 1. the job


def crane_job(tmp: Path, r: int, res: Results) -> float:
    name = f"{PREFIX}c{r}"
    root = project(tmp, name, f"10.94.{r}", slurm=False)
    shutil.copy(SOURCE, root / "pi.c")
    (root / "pi.toml").write_text(JOB.format(command=COMMAND, name=name))
    try:
        done = run([*CRANE, "job", "run", "pi.toml"], root)
        out = (root / "results" / "pi" / "pi.out").read_text()
        if not _PI.search(out):
            raise MeasureFailed(f"crane's pi.out has no pi: {out[-300:]}")
        shown = json.loads("\n".join(line for _, line in run([*CRANE, "job", "show", "pi", "--json"], root).lines))
        if shown.get("status") != "succeeded" or any(shown["steps"][s]["status"] != "done" for s in STEPS):
            raise MeasureFailed(f"the job's record is not a success: {json.dumps(shown)[:600]}")
        if any(d.name().startswith(name) for d in _domains()):
            raise MeasureFailed("the cluster's containers are still there after the job released it")
        steps, parts = {}, {}
        for _, line in done.lines:
            if m := _PROGRESS.match(line):
                steps[m.group(1)] = float(m.group(2))
            elif (m := _APPLIED.match(line)) and m.group(2) == "created":  # the cluster step's own resources
                parts[m.group(1).rpartition("/")[2]] = float(m.group(3))
        res.crane_parts.append(parts)
        res.crane.append(done.seconds)
        res.crane_steps.append(steps)
        return done.seconds
    finally:
        crane_down(root)


def _domains() -> list[libvirt.virDomain]:
    conn = libvirt.open(URI)
    try:
        return list(conn.listAllDomains())
    finally:
        conn.close()


def base_job(tmp: Path, r: int, res: Results) -> float:
    name = f"{PREFIX}b{r}"
    outdir = tmp / f"{name}-results"
    done = run([sys.executable, str(HERE / "baselines" / "mpijob.py"), f"{name}-", f"10.95.{r}", str(tmp / name),
                str(SOURCE), str(outdir)], tmp)
    out = (outdir / "pi.out").read_text()
    if not _PI.search(out):
        raise MeasureFailed(f"the baseline's pi.out has no pi: {out[-300:]}")
    marks = json.loads(done.lines[-1][1])
    phases, before = {}, 0.0
    for phase, at in marks.items():
        phases[phase] = at - before
        before = at
    res.base.append(done.seconds)
    res.base_phases.append(phases)
    return done.seconds


# 2. growing a Slurm cluster


def slurm_grow(tmp: Path, res: Results) -> None:
    name = f"{PREFIX}s"
    root = project(tmp, name, "10.94.200", slurm=True)
    node = [f"{name}-node-{i}" for i in range(1, 7)]
    try:
        _grow(root, name, node, res)
    except CraneError as exc:
        raise MeasureFailed(str(exc)) from None
    finally:
        crane_down(root, "--var", "nodes=6")


def _grow(root: Path, name: str, node: list[str], res: Results) -> None:
    from crane_iac.engine.workspace import Workspace
    from crane_iac.jobs.cluster import ssh_head

    res.cold_slurm.append(run([*CRANE, "apply", "--auto-approve"], root).seconds)
    head = ssh_head(Workspace.open(root), name)
    floor_started = time.monotonic()
    head.check(f"srun -N2 -w {node[0]},{node[1]} hostname", "srun on two nodes there already", timeout=120)
    res.srun_floor.append(time.monotonic() - floor_started)
    t0 = time.monotonic()
    grown = run([*CRANE, "apply", "--auto-approve", "--var", "nodes=6"], root)
    head.check(f"timeout 120 srun -N2 -w {node[4]},{node[5]} hostname", "srun on the two new nodes",
               timeout=180)
    res.grow_ready.append(time.monotonic() - t0)
    res.grow_apply.append(grown.seconds)
    steps = {}
    for _, line in grown.lines:
        m = _APPLIED.match(line)
        if m:
            steps[m.group(1).rpartition("/")[2]] = float(m.group(3))
    res.grow_steps.append(steps)


# the report




def fmt(value: float | None, unit: str = " s") -> str:
    return "—" if value is None else f"{value:.1f}{unit}"


def row(what: str, figure: str, target: str, baseline: str, ratio: str, ok: bool | None) -> list[str]:
    verdict = "—" if ok is None else ("met" if ok else "**not met**")
    return [what, figure, target, baseline, ratio, verdict]


def summary(res: Results, markdown: bool) -> str:
    header = ["figure", "crane", "target", "baseline", "ratio", "verdict"]
    rows = []
    ratio = median(res.ratios)
    ratios = (f"{ratio:.2f}× (median of {len(res.ratios)} pairs, {min(res.ratios):.2f}–{max(res.ratios):.2f}×)"
              if ratio is not None else "—")
    rows.append(row("`crane job run`: pi on a 4-node MPI cluster, from nothing to the result here and back to "
                    "nothing", fmt(median(res.crane)), "≤ 1.3× baseline", fmt(median(res.base)), ratios,
                    None if ratio is None else ratio <= 1.3))
    ready = median(res.grow_ready)
    rows.append(row("2 nodes added to a running Slurm cluster (4 → 6) until `srun -w` runs on both",
                    fmt(ready), "< 10 s", "ParallelCluster's node warm-up ≈ 30 s (not measured here)", "",
                    None if ready is None else ready < 10))
    return render(header, rows, markdown)


def breakdown(res: Results, markdown: bool) -> str:
    header = ["step", "crane (s)", "share of crane's time", "baseline (s)", "baseline's share"]
    crane_total, base_total = median(res.crane), median(res.base)
    rows = []
    base_map = {"cluster": ("containers", "host keys", "ssh"), "upload": ("upload",), "build": ("build",),
                "run": ("run",), "fetch": ("fetch",), "release": ("release",)}
    accounted = 0.0
    base_accounted = 0.0
    for step in STEPS:
        c = median([s[step] for s in res.crane_steps if step in s])
        b = median([sum(p.get(k, 0.0) for k in base_map[step]) for p in res.base_phases])
        accounted += c or 0.0
        base_accounted += b or 0.0
        rows.append([step, fmt(c, ""), fmt(100 * c / crane_total if c and crane_total else None, " %"),
                     fmt(b, ""), fmt(100 * b / base_total if b is not None and base_total else None, " %")])
        if step == "cluster" and res.crane_parts:
            head = median([p["configuration.head"] for p in res.crane_parts if "configuration.head" in p])
            slowest = median([max((v for k, v in p.items() if k.startswith("container.")), default=0.0)
                              for p in res.crane_parts])
            for what, value in (("… of which the head's configuration run (Ansible)", head),
                                ("… the slowest container's create (they run in parallel)", slowest)):
                rows.append([what, fmt(value, ""), fmt(100 * value / crane_total if value and crane_total else None,
                                                       " %"), "", ""])
    if crane_total is not None:
        rest = crane_total - accounted
        base_rest = base_total - base_accounted if base_total is not None else None
        rows.append(["start-up, planning, state, exit (the rest)", fmt(rest, ""), fmt(100 * rest / crane_total, " %"),
                     fmt(base_rest, ""), fmt(100 * base_rest / base_total if base_rest is not None and base_total
                                             else None, " %")])
    out = render(header, rows, markdown)
    if res.grow_steps:
        grow = ["part of 4 → 6", "seconds (median)"]
        names = sorted({k for s in res.grow_steps for k in s})
        grow_rows = [[f"`{k}` (crane apply's own line)", fmt(median([s[k] for s in res.grow_steps if k in s]), "")]
                     for k in names]
        apply_s, ready_s = median(res.grow_apply), median(res.grow_ready)
        grow_rows.append(["`crane apply --var nodes=6`, whole process", fmt(apply_s, "")])
        if apply_s is not None and ready_s is not None:
            grow_rows.append(["after the apply exits, until `srun -N2 -w node-5,node-6 hostname` returned",
                              fmt(ready_s - apply_s, "")])
        grow_rows.append(["floor: the same srun on two nodes that were there", fmt(median(res.srun_floor), "")])
        grow_rows.append(["for scale: `crane apply` of the Slurm cluster at 4 nodes, cold", fmt(median(res.cold_slurm),
                                                                                                "")])
        out += "\n\n" + render(grow, grow_rows, markdown)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/benchmarks.md)")
    parser.add_argument("--lock", type=Path, help="hold an flock on this file during each round")
    parser.add_argument("--only", choices=["job", "slurm"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/jobs.py needs root: it starts libvirtd's LXC driver and runs containers")
    load_start = os.getloadavg()
    started = time.monotonic()
    res = Results()
    tmp = Path(tempfile.mkdtemp(prefix="crane-bench-jobs-"))
    try:
        for r in range(1, args.repeat + 1) if args.only != "slurm" else ():
            order = ("base", "crane") if r % 2 else ("crane", "base")
            print(f"[{time.monotonic() - started:5.0f} s] job round {r}/{args.repeat}: {' then '.join(order)}",
                  file=sys.stderr, flush=True)
            try:
                with real_host(args.lock):
                    took = {who: (crane_job if who == "crane" else base_job)(tmp, r, res) for who in order}
                res.ratios.append(took["crane"] / took["base"])
            except MeasureFailed as exc:
                res.failures.append(f"job round {r}: {exc}")
        if args.only != "job":
            print(f"[{time.monotonic() - started:5.0f} s] Slurm 4 → 6", file=sys.stderr, flush=True)
            try:
                with real_host(args.lock):
                    slurm_grow(tmp, res)
            except MeasureFailed as exc:
                res.failures.append(f"Slurm 4 → 6: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"MPI jobs on {URI}\n\n" + summary(res, args.markdown))
    print("\n" + breakdown(res, args.markdown))

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values) or "none"

    print(f"\nruns (s): crane job {runs(res.crane)}; baseline {runs(res.base)}; 4 → 6 schedulable "
          f"{runs(res.grow_ready)}")
    measure.closing(load_start, started, res.failures)


if __name__ == "__main__":
    main()
