"""App domains on a real libvirtd (lxc:///system): crane against a plain libvirt-python + ansible-runner script.

    sudo python bench/appdomain.py [--repeat 3] [--markdown]

Measures in one run, on 5-container app domains (a load balancer, three web servers, a storage server) in fresh
temporary projects, with names starting ``cbn-`` on subnets 10.92.x.0/24 (crane) and 10.93.x.0/24 (baseline):
  1. cold apply to the first HTTP 200 through HAProxy: from starting `crane apply --auto-approve` (or the baseline,
     bench/baselines/appdomain.py, which defines the same network and containers and runs the same three shipped
     playbooks with ansible-runner in the same order) until the balancer's address first answers 200, polled by a
     thread started at the same moment; crane and the baseline alternate, everything torn down between runs;
  2. one web server added (`crane apply --var web=4` on the domain at size 3) until the new server has answered a
     request through HAProxy (the app's JSON names the host that served it); back to 3 between runs;
  3. `crane plan` with nothing to change, with `crane --version` and `crane plan` of an empty stack on the same
     endpoint as the floor of crane's fixed start-up.
Each figure is the median of --repeat runs. Prints the table, then where crane's time goes (its apply progress
lines: each step's seconds) beside the baseline's phases. Needs root: it starts libvirtd with scripts/realhost.sh
(a daemon already running is used as it is) and tears down everything it made, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench import measure, sweeping
from bench.measure import CRANE, MeasureFailed, median
from bench.tables import render

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
URI = "lxc:///system"
PREFIX = "cbn-"  # every object this bench makes is named so; the sweep touches nothing else
POOL_ROOT = Path("/var/lib/crane-bench-appdomain")
REALHOST_STATE = "/run/crane-bench-appdomain-realhost"
#: how long an app domain may take to answer (cold) or a new server to serve (scale) before the run counts as failed
ANSWER_TIMEOUT = 90.0

CONFIG = """state = "sqlite:///.crane/state.db"
[stacks.{stack}]
file = "stacks/{stack}.py"
uri = "{uri}"
shutdown_timeout = 5
[stacks.{stack}.vars]
web = {{ type = "int", default = 3 }}
"""
STACK = """from crane_iac import AppDomain, Network, Storage, StoragePool, WebTier, variable

net = Network("{name}-net", mode="isolated", ipv4="{net3}.0/24", dhcp=False)
pool = StoragePool("{name}-pool", path="{pool_dir}")
AppDomain("{name}", network=net, web=WebTier(size=variable("web"), max=6), storage=Storage(pool=pool))
"""
EMPTY_STACK = '"""No resources: `crane plan` of it is crane\'s start-up, the state read and the endpoint\'s."""\n'
_STEP = re.compile(r"^(\S+): (created|updated|deleted|replaced) \((\d+\.\d+)s\)$")
_APPLIED = re.compile(r"^Apply complete: .* in (\d+\.\d+)s ")


class Proc(measure.Proc):
    """A crane process, with what its apply's lines say."""

    def steps(self) -> dict[str, float]:
        """Each finished step's seconds, keyed by its address inside the app domain (``container.web-2``)."""
        found = {}
        for _, line in self.lines:
            m = _STEP.match(line)
            if m:
                found[m.group(1).rpartition("/")[2]] = float(m.group(3))
        return found

    def apply_seconds(self) -> float | None:
        return next((float(m.group(1)) for _, line in self.lines if (m := _APPLIED.match(line))), None)


def run(cmd: list[str], cwd: Path, *, t0: float | None = None, ok: tuple[int, ...] = (0,)) -> Proc:
    """Runs ``cmd`` to its end, noting when each stdout line arrives; an exit status not in ``ok`` is a failure."""
    done = measure.run(cmd, cwd, t0=t0, ok=ok)
    return Proc(done.seconds, done.lines, done.returncode, done.stderr)


class Balancer(threading.Thread):
    """Polls ``http://address/`` from ``t0`` on: when it first answered 200, and when each web host (the app's
    ``host``) first served a request through it."""

    def __init__(self, address: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.t0 = t0
        self.first_ok: float | None = None
        self.hosts: dict[str, float] = {}
        self.last_error = "no answer yet"
        self.stop = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.address, 80, timeout=0.5)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                now = time.monotonic() - self.t0
                if resp.status == 200:
                    host = str(json.loads(body).get("host"))
                    with self.changed:
                        self.first_ok = now if self.first_ok is None else self.first_ok
                        self.hosts.setdefault(host, now)
                        self.changed.notify_all()
                else:
                    self.last_error = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            time.sleep(0.02)

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(done, timeout)

    def __enter__(self) -> Balancer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(timeout=5)


@dataclass
class Results:
    cold_crane: list[float] = field(default_factory=list)  # to the first 200
    cold_crane_exit: list[float] = field(default_factory=list)
    cold_crane_plan: list[float] = field(default_factory=list)  # until the plan was printed
    cold_crane_apply: list[float] = field(default_factory=list)  # crane's own "Apply complete … in X s"
    cold_crane_steps: list[dict[str, float]] = field(default_factory=list)
    cold_base: list[float] = field(default_factory=list)
    cold_base_exit: list[float] = field(default_factory=list)
    cold_base_phases: list[dict[str, float]] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)  # to the new server serving through HAProxy
    scale_exit: list[float] = field(default_factory=list)
    scale_plan: list[float] = field(default_factory=list)
    scale_apply: list[float] = field(default_factory=list)
    scale_steps: list[dict[str, float]] = field(default_factory=list)
    scale_back: list[float] = field(default_factory=list)
    noop_plan: list[float] = field(default_factory=list)
    empty_plan: list[float] = field(default_factory=list)
    version: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def crane_project(root: Path, name: str, net3: str) -> Path:
    project = root / name
    (project / "stacks").mkdir(parents=True)
    (project / "crane.toml").write_text(CONFIG.format(stack="bench", uri=URI))
    (project / "stacks" / "bench.py").write_text(STACK.format(name=name, net3=net3,
                                                              pool_dir=POOL_ROOT / f"{name}-pool"))
    return project


def cold_crane(project: Path, net3: str, res: Results) -> None:
    t0 = time.monotonic()
    with Balancer(f"{net3}.10", t0) as lb:
        applied = run([*CRANE, "apply", "--auto-approve"], project, t0=t0)
        if not lb.wait(lambda: lb.first_ok is not None, ANSWER_TIMEOUT):
            raise MeasureFailed(f"crane's app domain applied, but {net3}.10 did not answer 200 within "
                                f"{ANSWER_TIMEOUT:.0f} s ({lb.last_error})")
    assert lb.first_ok is not None
    res.cold_crane.append(lb.first_ok)
    res.cold_crane_exit.append(applied.seconds)
    res.cold_crane_plan.append(applied.arrival("Plan:") or float("nan"))
    res.cold_crane_apply.append(applied.apply_seconds() or float("nan"))
    res.cold_crane_steps.append(applied.steps())


def cold_base(prefix: str, net3: str, workdir: Path, res: Results) -> None:
    t0 = time.monotonic()
    with Balancer(f"{net3}.10", t0) as lb:
        done = run([sys.executable, str(HERE / "baselines" / "appdomain.py"), "up", prefix, net3, str(workdir)],
                   REPO, t0=t0)
        if not lb.wait(lambda: lb.first_ok is not None, ANSWER_TIMEOUT):
            raise MeasureFailed(f"the baseline finished, but {net3}.10 did not answer 200 within "
                                f"{ANSWER_TIMEOUT:.0f} s ({lb.last_error})")
    assert lb.first_ok is not None
    res.cold_base.append(lb.first_ok)
    res.cold_base_exit.append(done.seconds)
    res.cold_base_phases.append(json.loads(done.lines[-1][1]))


def base_down(prefix: str, workdir: Path) -> None:
    run([sys.executable, str(HERE / "baselines" / "appdomain.py"), "down", prefix, str(workdir)], REPO)


def scale_out(project: Path, name: str, net3: str, res: Results) -> None:
    """3 → 4 web servers, timed until web-4 serves through the balancer; then back to 3 (timed to its exit)."""
    new = f"{name}-web-4"
    t0 = time.monotonic()
    with Balancer(f"{net3}.10", t0) as lb:
        applied = run([*CRANE, "apply", "--auto-approve", "--var", "web=4"], project, t0=t0)
        if not lb.wait(lambda: new in lb.hosts, ANSWER_TIMEOUT):
            raise MeasureFailed(f"web=4 applied, but {new} served no request through {net3}.10 within "
                                f"{ANSWER_TIMEOUT:.0f} s (seen: {', '.join(sorted(lb.hosts)) or lb.last_error})")
    res.scale.append(lb.hosts[new])
    res.scale_exit.append(applied.seconds)
    res.scale_plan.append(applied.arrival("Plan:") or float("nan"))
    res.scale_apply.append(applied.apply_seconds() or float("nan"))
    res.scale_steps.append(applied.steps())
    res.scale_back.append(run([*CRANE, "apply", "--auto-approve", "--var", "web=3"], project).seconds)


def plans(project: Path, root: Path, repeat: int, res: Results) -> None:
    for _ in range(repeat):
        plan = run([*CRANE, "plan", "--detailed-exitcode"], project)
        if not any("No changes." in line for _, line in plan.lines):
            raise MeasureFailed(f"the app domain's plan is not empty: {plan.why()}")
        res.noop_plan.append(plan.seconds)
    empty = root / "empty"
    (empty / "stacks").mkdir(parents=True)
    (empty / "crane.toml").write_text(CONFIG.format(stack="empty", uri=URI))
    (empty / "stacks" / "empty.py").write_text(EMPTY_STACK)
    for _ in range(repeat):
        res.empty_plan.append(run([*CRANE, "plan", "--detailed-exitcode"], empty).seconds)
    for _ in range(max(repeat, 5)):
        res.version.append(run([*CRANE, "--version"], root).seconds)


def sweep(prefix: str = PREFIX) -> list[str]:
    """What this bench left on the endpoint under ``prefix``, destroyed (bench/sweeping.py); what it removed."""
    return sweeping.sweep(URI, prefix)


def crane_down(project: Path) -> None:
    """`crane destroy`, then the project's directory goes (what is left is what a teardown still has to do)."""
    if (project / ".crane").exists():
        run([*CRANE, "destroy", "--auto-approve"], project)
    shutil.rmtree(project, ignore_errors=True)




def secs(value: float | None, digits: int = 2) -> str:
    return "failed" if value is None else f"{value:.{digits}f} s"


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")




def summary(res: Results, repeat: int, markdown: bool) -> str:
    c, b = median(res.cold_crane), median(res.cold_base)
    ratio = c / b if c is not None and b is not None else None
    s, p = median(res.scale), median(res.noop_plan)
    rows = [
        ["cold apply of a 5-container app domain to the first HTTP 200 through HAProxy", secs(c), "≤ 1.2× baseline",
         secs(b), f"{ratio:.2f}×" if ratio else "", verdict(None if ratio is None else ratio <= 1.2)],
        ["… until `crane apply` / the script exits", secs(median(res.cold_crane_exit)), "",
         secs(median(res.cold_base_exit)), "", "—"],
        ["one added web server (3 → 4) serving through HAProxy, from `crane apply --var web=4`", secs(s), "≤ 3 s",
         "", "", verdict(None if s is None else s <= 3)],
        ["… until that `crane apply` exits", secs(median(res.scale_exit)), "", "", "", "—"],
        ["… back to 3 (`crane apply --var web=3`, drains web-4), until it exits", secs(median(res.scale_back)), "",
         "", "", "—"],
        ["no-op `crane plan` of the app domain (14 resources)", secs(p), "≤ 1 s", "", "",
         verdict(None if p is None else p <= 1)],
        ["floor: `crane plan` of an empty stack on lxc:///system", secs(median(res.empty_plan)), "", "", "", "—"],
        ["floor: `crane --version`", secs(median(res.version), 3), "", "", "", "—"],
    ]
    header = ["measure", "crane", "target", "baseline (libvirt-python + ansible-runner)", "ratio", ""]
    return f"App domains on lxc:///system, median of {repeat}\n\n" + render(header, rows, markdown)


def breakdown(res: Results, markdown: bool) -> str:
    """Where the time goes: crane's phases and steps (median seconds each), the baseline's phases beside."""
    def step(runs: list[dict[str, float]], pick: Callable[[dict[str, float]], float | None]) -> str:
        values = [v for v in (pick(r) for r in runs) if v is not None]
        return secs(median(values)) if values else ""

    def slowest(prefix: str) -> Callable[[dict[str, float]], float | None]:
        return lambda r: max((v for k, v in r.items() if k.startswith(prefix)), default=None)

    def one(key: str) -> Callable[[dict[str, float]], float | None]:
        return lambda r: r.get(key)

    def phase(a: str | None, z: str) -> Callable[[dict[str, float]], float | None]:
        return lambda r: r[z] - (r[a] if a else 0.0) if z in r else None

    cold, scale, base = res.cold_crane_steps, res.scale_steps, res.cold_base_phases
    after = [ok - done for ok, done in zip(res.cold_crane, res.cold_crane_exit, strict=False)]
    scale_after = [ok - done for ok, done in zip(res.scale, res.scale_exit, strict=False)]
    base_after = [ok - done for ok, done in zip(res.cold_base, res.cold_base_exit, strict=False)]
    base_tail = [e - r["lb"] for e, r in zip(res.cold_base_exit, base, strict=False)]
    plan_to_apply = [e - p - a for e, p, a in zip(res.cold_crane_exit, res.cold_crane_plan, res.cold_crane_apply,
                                                  strict=False)]
    scale_plan_to_apply = [e - p - a for e, p, a in zip(res.scale_exit, res.scale_plan, res.scale_apply,
                                                        strict=False)]
    rows = [
        ["start-up, state, refresh and plan (until the plan is printed)", secs(median(res.cold_crane_plan)),
         secs(median(res.scale_plan)), "(in the phases below)"],
        ["apply (crane's own 'Apply complete … in')", secs(median(res.cold_crane_apply)),
         secs(median(res.scale_apply)), ""],
        ["  ssh_key / pool / network / data volume", " / ".join(step(cold, slowest(k)) or "–" for k in
         ("ssh_key.", "pool.", "network.", "volume.")), "",
         f"key + network: {step(base, phase(None, 'network'))}"],
        ["  containers (slowest of those created)", step(cold, slowest("container.")),
         step(scale, slowest("container.")), f"define + start 5: {step(base, phase('network', 'containers'))}"],
        ["  wait for SSH", "(inside each configuration)", "", step(base, phase("containers", "ssh"))],
        ["  configuration.storage", step(cold, one("configuration.storage")), "",
         step(base, phase("ssh", "storage"))],
        ["  configuration.web-* (slowest)", step(cold, slowest("configuration.web-")),
         step(scale, slowest("configuration.web-")), f"3 in parallel: {step(base, phase('storage', 'web'))}"],
        ["  configuration.lb", step(cold, one("configuration.lb")), step(scale, one("configuration.lb")),
         step(base, phase("web", "lb"))],
        ["printed the plan → exit, less the apply (state commit, exit)", secs(median(plan_to_apply)),
         secs(median(scale_plan_to_apply)), f"script's last run → exit, + Python start-up: {secs(median(base_tail))}"],
        ["process exit → HAProxy serves (first 200 / web-4's first answer)", secs(median(after)),
         secs(median(scale_after)), secs(median(base_after))],
    ]
    header = ["where the time goes (median)", "crane cold apply", "crane 3 → 4", "baseline cold"]
    return "\n\n" + render(header, rows, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/benchmarks.md)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/appdomain.py needs root: it starts libvirtd's LXC driver and runs containers")
    load_start = os.getloadavg()
    started = time.monotonic()
    env = {**os.environ, "CRANE_REALHOST_STATE": REALHOST_STATE}
    host = subprocess.run([str(REPO / "scripts" / "realhost.sh"), "start"], capture_output=True, text=True, env=env)
    if host.returncode != 0:
        sys.exit(f"no real hypervisor: {host.stdout.strip()}")
    res = Results()
    pool_root_made = not POOL_ROOT.exists()
    POOL_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="crane-bench-appdomain-"))
    left: list[str] = []
    try:
        leftover = sweep()
        if leftover:
            print(f"removed what an earlier run left: {', '.join(leftover)}", file=sys.stderr)
        kept: tuple[Path, str, str] | None = None
        for r in range(args.repeat):
            # alternate who goes first; the last round ends with crane, whose domain the later measures use
            last = r == args.repeat - 1
            order = ("base", "crane") if r % 2 == 0 or last else ("crane", "base")
            for who in order:
                name, net3 = (f"{PREFIX}c{r + 1}", f"10.92.{r + 1}") if who == "crane" else \
                    (f"{PREFIX}b{r + 1}", f"10.93.{r + 1}")
                print(f"[{time.monotonic() - started:5.0f} s] cold apply {r + 1}/{args.repeat}: {who}",
                      file=sys.stderr, flush=True)
                try:
                    if who == "crane":
                        project = crane_project(tmp, name, net3)
                        try:
                            cold_crane(project, net3, res)
                        finally:
                            if last and (project / ".crane").exists():
                                kept = (project, name, net3)
                            else:
                                crane_down(project)
                    else:
                        try:
                            cold_base(f"{name}-", net3, tmp / name, res)
                        finally:
                            base_down(f"{name}-", tmp / name)
                except MeasureFailed as exc:
                    res.failures.append(f"cold apply ({who}, run {r + 1}): {exc}")
        if kept is None:
            res.failures.append("no app domain applied by crane: the plan and scale measures did not run")
        else:
            project, name, net3 = kept
            print(f"[{time.monotonic() - started:5.0f} s] no-op plans", file=sys.stderr, flush=True)
            try:
                plans(project, tmp, args.repeat, res)
            except MeasureFailed as exc:
                res.failures.append(f"plans: {exc}")
            for r in range(args.repeat):
                print(f"[{time.monotonic() - started:5.0f} s] scale 3 → 4 → 3, {r + 1}/{args.repeat}",
                      file=sys.stderr, flush=True)
                try:
                    scale_out(project, name, net3, res)
                except MeasureFailed as exc:
                    res.failures.append(f"scale 3 → 4 (run {r + 1}): {exc}")
                    break
            crane_down(project)
    except MeasureFailed as exc:
        res.failures.append(f"teardown: {exc}")
    finally:
        for project in tmp.iterdir() if tmp.exists() else []:
            if (project / ".crane" / "state.db").exists() and project.name != "empty":
                try:
                    crane_down(project)
                except MeasureFailed as exc:
                    res.failures.append(f"teardown of {project.name}: {exc}")
        try:
            left = sweep()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if pool_root_made:
                shutil.rmtree(POOL_ROOT, ignore_errors=True)
            subprocess.run([str(REPO / "scripts" / "realhost.sh"), "stop"], capture_output=True, env=env)
    if left:
        res.failures.append(f"teardown left these behind (the sweep removed them): {', '.join(left)}")
    print(summary(res, args.repeat, args.markdown))
    print(breakdown(res, args.markdown))

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values) or "none"

    print(f"\nruns (s): crane cold {runs(res.cold_crane)}; baseline cold {runs(res.cold_base)}; "
          f"3 → 4 {runs(res.scale)}; no-op plan {runs(res.noop_plan)}; empty plan {runs(res.empty_plan)}")
    measure.closing(load_start, started, res.failures)


if __name__ == "__main__":
    main()
