"""`crane watch` as a user runs it: a real child process watching a project on the sandbox hypervisor, edited
from here, stopped with a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from crane_iac.engine.workspace import Workspace
from tests.conftest import CRANE, ProjectDir
from tests.waiting import wait_until

WAITING = "Waiting for the next save."

CONFIG = """
    [stacks.main]
    file = "stacks/main.py"

    [stacks.main.vars]
    vcpus = {{ type = "int", default = {vcpus} }}
"""

# the memory comes from a helper module beside the stack: an edit to it is an edit to the stack
STACK = """
    import os, sys
    sys.path.insert(0, os.path.dirname(__file__))
    from sizes import MEMORY
    from crane_iac import VM, variable

    VM("web", vcpus=variable("vcpus"), max_vcpus=4, memory_mib=MEMORY, max_memory_mib=2048)
"""


class Watch:
    """`crane watch ARGS` running in the project, its output (stdout and stderr, in order) read as it comes."""

    def __init__(self, project: ProjectDir, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("CRANE_FAILPOINT", None)
        self.proc = subprocess.Popen([*CRANE, "watch", "--debounce", "0.3", *args], cwd=project.root, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def rounds(self) -> int:
        return self.lines.count(WAITING)

    def since(self, mark: int) -> str:
        return "\n".join(self.lines[mark:])

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 15) -> None:
        def alive_and_done() -> bool:
            assert self.proc.poll() is None, f"crane watch exited ({self.proc.returncode}) before {what}:\n{self.text}"
            return done()

        wait_until(alive_and_done, timeout, what, detail=lambda: f"\n{self.text}")

    def next_round(self, rounds: int) -> str:
        """Wait until round number ``rounds`` has finished; its output."""
        self.wait_for(lambda: self.rounds() >= rounds, f"round {rounds}")
        waits = [i for i, line in enumerate(self.lines) if line == WAITING]
        return "\n".join(self.lines[(waits[-2] + 1 if len(waits) > 1 else 0):waits[-1]])

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=15)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def watching(project: ProjectDir) -> Iterator[Callable[..., Watch]]:
    """Start `crane watch` in the project; whatever happens, the process is gone after the test."""
    started: list[Watch] = []

    def start(*args: str) -> Watch:
        started.append(Watch(project, *args))
        return started[-1]

    yield start
    for w in started:
        w.close()


def write(project: ProjectDir, *, memory: int | None = None, vcpus: int | None = None,
          stack: str | None = None) -> None:
    """Save the helper module, crane.toml or the stack file: each only when given."""
    if vcpus is not None:
        project.write_config(CONFIG.format(vcpus=vcpus))
    if memory is not None:
        (project.root / "stacks").mkdir(exist_ok=True)
        (project.root / "stacks" / "sizes.py").write_text(f"MEMORY = {memory}\n")
    if stack is not None:
        project.write_stack(stack)


def test_watch_plans_on_every_save_once_per_burst_and_survives_errors(
        project: ProjectDir, watching: Callable[..., Watch]) -> None:
    write(project, memory=512, vcpus=1, stack=STACK)
    w = watching()
    first = w.next_round(1)
    assert "start: planning." in first and "+ vm.web" in first and "Plan: 1 to create" in first, w.text
    assert "Watching crane.toml, stacks/**/*.py for stack 'main'" in first

    # the stack's helper module, then crane.toml: each save is a new plan showing the change
    write(project, memory=768)
    second = w.next_round(2)
    assert "stacks/sizes.py changed: planning." in second and "memory_mib     = 768" in second, w.text
    write(project, vcpus=2)
    third = w.next_round(3)
    assert "crane.toml changed: planning." in third and "vcpus          = 2" in third, w.text

    # five saves within 0.1 s: one plan, of the last
    started = time.monotonic()
    for memory in (1000, 1001, 1002, 1003, 1004):
        (project.root / "stacks" / "sizes.py").write_text(f"MEMORY = {memory}\n")
    assert time.monotonic() - started < 0.1
    burst = w.next_round(4)
    assert "memory_mib     = 1004" in burst and burst.count("Plan: ") == 1, w.text
    mark = len(w.lines)

    # editor droppings and bytecode are not saves of the stack
    (project.root / "stacks" / ".main.py.swp").write_text("x")
    (project.root / "stacks" / "main.py~").write_text("x")
    (project.root / "stacks" / "__pycache__").mkdir(exist_ok=True)
    (project.root / "stacks" / "__pycache__" / "sizes.cpython-311.py").write_text("x")
    (project.root / "notes.txt").write_text("x")

    # a syntax error: its diagnostic (file:line), and the watch goes on. Its save comes after the droppings' events
    # (one inotify queue, in order): had they counted, they would be named in this round or have made one before
    write(project, stack=STACK + "    VM(\n")
    broken = w.next_round(5)
    assert w.since(mark).startswith("[") and w.since(mark).count(WAITING) == 1, w.text
    assert w.lines[mark].endswith("] stacks/main.py changed: planning."), w.text
    assert f"error: {project.root / 'stacks' / 'main.py'}:8: syntax error" in broken, w.text
    assert "1 error(s); nothing was changed." in broken and "Traceback" not in w.text
    assert w.proc.poll() is None
    write(project, stack=STACK)
    fixed = w.next_round(6)
    assert "+ vm.web" in fixed and "Plan: 1 to create" in fixed, w.text

    # nothing was applied: a plan only reads
    listed = project.crane("state", "list")
    assert (listed.code, listed.out) == (0, ""), listed.err
    assert w.stop(signal.SIGTERM) == 0
    assert w.lines[-1] == "SIGTERM: stopped watching.", w.text


def test_watch_apply_applies_each_save_and_waits_out_a_held_lock(
        project: ProjectDir, watching: Callable[..., Watch]) -> None:
    write(project, memory=512, vcpus=1, stack=STACK)
    w = watching("--apply")
    first = w.next_round(1)
    assert "start: planning and applying." in first and "Apply complete: 1 created" in first, w.text
    assert project.domains() == ["web"]

    write(project, memory=1024)
    second = w.next_round(2)
    assert "~ vm.web  memory_mib: 512 → 1024" in second and "Apply complete: 1 updated" in second, w.text
    assert _recorded_memory(project) == 1024

    # another run holds the lock: reported, and tried again once it is free, without another save
    ws = Workspace.open(project.root, "main")
    try:
        lock_id = ws.store.acquire_lock("main", "test holds it", 0)
        write(project, memory=1536)
        held = w.next_round(3)
        assert "error: stack 'main' is locked" in held and "Trying again in" in held, w.text
        assert _recorded_memory(project) == 1024
        ws.store.release_lock("main", lock_id)
    finally:
        ws.close()
    retried = w.next_round(4)
    assert "the lock was held; trying again: planning and applying." in retried, w.text
    assert "Apply complete: 1 updated" in retried and _recorded_memory(project) == 1536

    assert w.stop(signal.SIGINT) == 0
    assert w.lines[-1] == "SIGINT: stopped watching.", w.text


def _recorded_memory(project: ProjectDir) -> int:
    shown = project.crane("state", "show", "vm.web")
    assert shown.code == 0, shown.err
    return int(json.loads(shown.out)["properties"]["memory_mib"])
