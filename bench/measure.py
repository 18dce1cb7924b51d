"""What the real-host benchmarks share (bench/appdomain.py, bench/jobs.py): the environment crane and the baselines
run in, whole processes timed with each stdout line's arrival, and the medians and closing lines of their reports."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: as a user runs it: Python writes and reuses bytecode (a sandbox that sets PYTHONDONTWRITEBYTECODE would have every
#: run compile crane's modules again, about 0.15 s, which no user pays); the baselines run with the same environment
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "NO_COLOR": "1",
       "PYTHONPATH": str(REPO)}
CRANE = [sys.executable, "-m", "crane_iac"]


class MeasureFailed(Exception):
    """A measurement that could not finish; its message says why."""


@dataclass
class Proc:
    """A whole process: seconds from ``t0`` to its exit, and its stdout lines with their arrival times."""

    seconds: float
    lines: list[tuple[float, str]]
    returncode: int
    stderr: str

    def arrival(self, prefix: str) -> float | None:
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def why(self) -> str:
        tail = [ln for ln in (self.stderr.splitlines() + [ln for _, ln in self.lines]) if ln.strip()]
        return " / ".join(tail[-4:])[-600:] or f"exit status {self.returncode}"


def run(cmd: list[str], cwd: Path, *, t0: float | None = None, ok: tuple[int, ...] = (0,),
        timeout: float | None = None) -> Proc:
    """Runs ``cmd`` to its end (killed after ``timeout`` seconds, if given), noting when each stdout line arrives;
    an exit status not in ``ok`` is a failure."""
    t0 = time.monotonic() if t0 is None else t0
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        lines = [(time.monotonic() - t0, line.rstrip("\n")) for line in proc.stdout]
        rc = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
    seconds = time.monotonic() - t0
    reader.join()
    done = Proc(seconds, lines, rc, "".join(err))
    if rc not in ok:
        shown = ["crane", *cmd[len(CRANE):]] if cmd[:len(CRANE)] == CRANE else cmd
        raise MeasureFailed(f"`{' '.join(shown)}` failed: {done.why()}")
    return done


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def closing(load_start: tuple[float, float, float], started: float, failures: list[str]) -> None:
    """The report's last lines: the machine's load and the bench's time, then each failure; exit 1 after any."""
    print(f"machine load (1/5/15 min): {' '.join(f'{v:.2f}' for v in load_start)} at start, "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at end, on {os.cpu_count()} CPUs; "
          f"bench took {time.monotonic() - started:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        sys.exit(1)
