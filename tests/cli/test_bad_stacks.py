"""A corpus of broken stacks: each gives its diagnostic (file:line and address), exit 1, and touches nothing.

Each file says what it expects in comments: ``# expect: <text in stderr>`` (any number), ``# expect-line: <n>`` (the
stack's line every run must name; omit it for a problem in crane.toml), ``# crane.toml: <line>`` (added to the
project's crane.toml for this file) and ``# args: <more command-line arguments>``.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, assert_clean_error

CORPUS = sorted((Path(__file__).parent / "bad_stacks").glob("*.py"))
CONFIG = '[stacks.main]\nfile = "stacks/main.py"\n'
GOOD = """
from crane_iac import VM, Network
lan = Network("lan", ipv4="10.50.0.0/24")
VM("keep", vcpus=1, memory_mib=256, networks=[lan])
"""


def directives(path: Path, name: str) -> list[str]:
    return re.findall(rf"^# {re.escape(name)}: (.+)$", path.read_text(), re.M)


def expectations(path: Path) -> tuple[list[str], int | None]:
    lines = directives(path, "expect-line")
    return directives(path, "expect"), int(lines[0]) if lines else None


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> ProjectDir:
    """A project with real infrastructure applied, so that each bad stack can prove it touched none of it."""
    proj = ProjectDir(tmp_path_factory.mktemp("bad"))
    proj.write_config(CONFIG)
    proj.write_stack(GOOD)
    assert proj.crane("apply", "--auto-approve").code == 0
    return proj


@pytest.mark.parametrize("bad", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("command", ["plan", "apply", "validate"])
def test_bad_stack_reports_and_touches_nothing(applied: ProjectDir, bad: Path, command: str) -> None:
    needles, line = expectations(bad)
    assert needles, f"{bad.name} declares no '# expect:'"
    stack = applied.root / "stacks" / "main.py"
    shutil.copy(bad, stack)
    applied.write_config(CONFIG + "".join(f"{extra}\n" for extra in directives(bad, "crane.toml")))
    before = applied.snapshot()
    args = [command, "--auto-approve"] if command == "apply" else [command]
    args += [arg for extra in directives(bad, "args") for arg in shlex.split(extra)]
    try:
        result = applied.crane(*args)
    finally:
        stack.write_text(GOOD)
        applied.write_config(CONFIG)
    assert_clean_error(result, *([f"{stack}:{line}"] if line else []), *needles)
    assert applied.snapshot() == before
    assert applied.domains() == ["keep"]
