"""A corpus of broken stacks: each gives its diagnostic (file:line and address), exit 1, and touches nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, assert_clean_error

CORPUS = sorted((Path(__file__).parent / "bad_stacks").glob("*.py"))
GOOD = """
from crane_iac import VM, Network
lan = Network("lan", ipv4="10.50.0.0/24")
VM("keep", vcpus=1, memory_mib=256, networks=[lan])
"""


def expectations(path: Path) -> tuple[list[str], int]:
    text = path.read_text()
    needles = re.findall(r"^# expect: (.+)$", text, re.M)
    line = int(re.search(r"^# expect-line: (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return needles, line


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> ProjectDir:
    """A project with real infrastructure applied, so that each bad stack can prove it touched none of it."""
    proj = ProjectDir(tmp_path_factory.mktemp("bad"))
    proj.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    proj.write_stack(GOOD)
    assert proj.crane("apply", "--auto-approve").code == 0
    return proj


@pytest.mark.parametrize("bad", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("command", ["plan", "apply", "validate"])
def test_bad_stack_reports_and_touches_nothing(applied: ProjectDir, bad: Path, command: str) -> None:
    needles, line = expectations(bad)
    stack = applied.root / "stacks" / "main.py"
    shutil.copy(bad, stack)
    before = applied.snapshot()
    args = [command, "--auto-approve"] if command == "apply" else [command]
    try:
        result = applied.crane(*args)
    finally:
        stack.write_text(GOOD)
    assert_clean_error(result, f"{stack}:{line}", *needles)
    assert applied.snapshot() == before
    assert applied.domains() == ["keep"]
