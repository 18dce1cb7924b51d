"""The same project on each state backend through the `crane` command: plan, apply, a durable setting the stack
reads (with who and why in the history), a human apply that honours it, and `crane state migrate` to the other
backend with nothing lost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, ok

STACK = """
from crane_iac import VM, Network, export, setting

lan = Network("lan", mode="nat", ipv4="10.82.0.0/24")
for i in range(setting("web.size", 1)):
    VM(f"web-{i + 1}", vcpus=1, memory_mib=256, networks=[lan])
export("size", setting("web.size", 1))
"""


def runs_of(history: str) -> list[tuple[str, list[str]]]:
    """`crane state history` as (run header, its lines), in order; every line belongs to a run."""
    runs: list[tuple[str, list[str]]] = []
    for line in history.splitlines():
        if line.startswith("run "):
            runs.append((line, []))
        else:
            assert line.startswith("  ") and runs, history
            runs[-1][1].append(line)
    return runs


def test_a_project_on_each_backend_and_migrated_to_sqlite(project: ProjectDir, state_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRANE_STATE_URL", state_url)
    project.write_stack(STACK)
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["web-1"]

    # a controller (or a person) sets the size; the next human apply honours it instead of undoing it
    set_out = ok(project, "setting", "set", "web.size", "3", "--why", "average memory 82% > 75% for 2 periods")
    assert "Set web.size = 3" in set_out
    plan = ok(project, "plan")
    assert "+ vm.web-2" in plan and "+ vm.web-3" in plan and "Plan: 2 to create" in plan
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["web-1", "web-2", "web-3"]
    assert ok(project, "output", "size").strip() == "3"
    assert "No changes" in ok(project, "plan")
    history = ok(project, "state", "history")
    assert "setting  setting:web.size  by " in history and ": average memory 82% > 75% for 2 periods" in history
    # one apply is one run: its batches of steps and its outputs, under one header with the serials they made
    runs = runs_of(history)
    assert [header.split()[2] for header, _lines in runs] == ["apply", "setting", "apply"], history
    header, lines = runs[-1]
    assert re.search(r"^run \S+  apply  by \S+@\S+ pid \d+  since \S+  serials (\d+)-(\d+)$", header), header
    first, last = map(int, re.findall(r"serials (\d+)-(\d+)", header)[0])
    assert last > first and [int(line.split()[2]) for line in lines] == sorted(int(line.split()[2]) for line in lines)
    assert {line.split()[2] for line in lines} == {str(n) for n in range(first, last + 1)}
    assert any("create   vm.web-2" in line for line in lines) and any("outputs" in line for line in lines)
    assert "web.size = 3  (set by " in ok(project, "setting", "list")

    # every stack moves to a fresh SQLite file; pointed there, the project plans no change
    target = f"sqlite:///{tmp_path}/moved.db"
    migrated = ok(project, "state", "migrate", "--to", target)
    assert "Copied 1 stack(s)" in migrated and "main: serial" in migrated and "1 settings" in migrated
    monkeypatch.setenv("CRANE_STATE_URL", target)
    assert "No changes" in ok(project, "plan")
    assert "web.size = 3" in ok(project, "setting", "list")
    assert ok(project, "state", "history") == history

    # unset: the stack's default again
    ok(project, "setting", "unset", "web.size", "--why", "load is back to normal")
    assert "- vm.web-3" in ok(project, "plan")


def test_migrating_onto_a_store_that_has_the_stack_is_refused(project: ProjectDir, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_stack(STACK)
    ok(project, "apply", "--auto-approve")
    target = f"sqlite:///{tmp_path}/other.db"
    ok(project, "state", "migrate", "--to", target)
    again = project.crane("state", "migrate", "--to", target)
    assert again.code == 1 and "Traceback" not in again.err and "main" in again.err, again.err
