"""crane_iac.early: a plan's sandbox starts opening before the command is parsed, and only an exact match is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crane_iac.early import guess_sandbox
from crane_iac.providers.libvirt import early as opened_early
from tests.conftest import ProjectDir, ok

STACK = """
    from crane_iac import Network
    Network("lan", mode="isolated", ipv4="10.9.0.0/24")
"""


@pytest.fixture
def applied(project: ProjectDir) -> ProjectDir:
    project.write_stack(STACK)
    ok(project, "apply", "--auto-approve")
    return project


@pytest.fixture
def takes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """What the sandbox host asked the early opener for, and whether it got a connection."""
    seen: list[tuple[str, bool]] = []
    take = opened_early.take

    def spying(uri: str) -> Any:
        conn = take(uri)
        seen.append((uri, conn is not None))
        return conn

    monkeypatch.setattr(opened_early, "take", spying)
    return seen


def test_a_plan_takes_the_connection_opened_early(applied: ProjectDir, takes: list[tuple[str, bool]]) -> None:
    node_file = applied.root.resolve() / ".crane" / "sandbox.xml"
    assert "No changes" in ok(applied, "plan")
    assert takes == [(f"test://{node_file}", True)]
    assert opened_early.started() == []


def test_an_apply_opens_its_own(applied: ProjectDir, takes: list[tuple[str, bool]]) -> None:
    # an apply holds the sandbox's lock before it opens the node file: nothing is opened before it
    ok(applied, "apply", "--auto-approve")
    assert takes and all(not got for _, got in takes)


def test_a_connection_nobody_takes_is_closed(applied: ProjectDir, tmp_path: Path) -> None:
    uri = f"test://{applied.root / '.crane' / 'sandbox.xml'}"
    opened_early.start(uri)
    assert opened_early.started() == [uri]
    opened_early.discard()
    assert opened_early.started() == []
    assert opened_early.take(uri) is None


def test_a_failed_early_open_leaves_the_host_to_report_it(tmp_path: Path) -> None:
    uri = f"test://{tmp_path / 'missing.xml'}"
    opened_early.start(uri)
    assert opened_early.take(uri) is None


def test_the_guess(applied: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    root = applied.root.resolve()
    node_file = root / ".crane" / "sandbox.xml"
    monkeypatch.chdir(root / "stacks")  # crane.toml is found above, as the command finds it
    monkeypatch.delenv("CRANE_STACK", raising=False)
    assert guess_sandbox(["plan"]) == node_file
    assert guess_sandbox(["plan", "--var", "x=1", "--refresh=false", "-s", "main"]) == node_file
    assert guess_sandbox(["apply"]) is None  # not read-only
    assert guess_sandbox(["plan", "--stack", "other"]) is None
    assert guess_sandbox([]) is None
    monkeypatch.chdir("/")
    assert guess_sandbox(["plan"]) is None
    assert guess_sandbox(["plan", "-C", str(root)]) == node_file
    assert guess_sandbox(["plan", f"--chdir={root}"]) == node_file

    applied.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        uri = "qemu:///system"
        [stacks.side]
        file = "stacks/main.py"
    """)
    assert guess_sandbox(["plan", "-C", str(root)]) is None  # two stacks, no default, no choice
    assert guess_sandbox(["plan", "-C", str(root), "-s", "main"]) is None  # a real host: fast to open
    assert guess_sandbox(["plan", "-C", str(root), "-s", "side"]) == node_file
    monkeypatch.setenv("CRANE_STACK", "side")
    assert guess_sandbox(["plan", "-C", str(root)]) == node_file
    monkeypatch.delenv("CRANE_STACK")

    applied.write_config("""
        default_stack = "main"
        [stacks.main]
        file = "stacks/main.py"
        [stacks.main.providers.default]
        type = "xenapi"
        uri = "https://xen.example"
    """)
    assert guess_sandbox(["plan", "-C", str(root)]) is None
    applied.write_config("[stacks.main\n")  # the command reports it; the guess only gives up
    assert guess_sandbox(["plan", "-C", str(root)]) is None
    applied.write_config("""
        [stacks.main]
        file = "stacks/main.py"
    """)
    node_file.unlink()
    assert guess_sandbox(["plan", "-C", str(root)]) is None  # no sandbox yet: nothing to open early
