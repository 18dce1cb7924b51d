"""The README and the docs site (docs/) say what the repository does: the README opens with its two commands and
its tour runs as written; the docs' stack and crane.toml snippets are the real files, the tinyweb section loads as
written, and the edit in the tutorial's workflow gives the plan lines it shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from crane_iac.config import load_project
from tests.conftest import REPO, ProjectDir

README = (REPO / "README.md").read_text()
DOCS = REPO / "docs"
#: the two commands the README opens with, exactly
COMMANDS = [
    "scripts/install.sh && . .venv/bin/activate && crane apply --auto-approve   "
    "# 1. install everything, apply stacks/demo.py on the sandbox",
    "scripts/test.sh                                                            "
    "# 2. the whole test suite (ruff, mypy, import-linter, docs, pytest)",
]


def page(name: str) -> str:
    return (DOCS / name).read_text()


def blocks(language: str, text: str | None = None) -> list[str]:
    """The ``language`` code blocks of ``text``, or of every page of the docs."""
    if text is None:
        text = "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_opens_with_its_two_commands() -> None:
    first = re.search(r"```(\w*)\n(.*?)```", README, re.S)
    assert first is not None and first.group(1) == "sh"
    assert first.group(2).splitlines() == COMMANDS
    assert page("index.md").count("\n".join(COMMANDS)) == 1  # the site's home page opens with them too


def test_the_readme_tour_plans_applies_and_shows_the_edit(project: ProjectDir) -> None:
    stack = next(b for b in blocks("python", README) if b.startswith("# tour\n"))
    commands = next(b for b in blocks("sh", README) if b.startswith("crane plan "))
    shown = [line.split("#", 1)[1].strip() for line in commands.splitlines() if "#   " in line]
    project.write_stack(stack)
    planned = project.crane("plan")
    assert planned.code == 0
    for address in shown[0].split():
        if address != "+":
            assert f"+ {address}\n" in planned.out, (address, planned.out)
    assert project.crane("apply", "--auto-approve").code == 0
    project.write_stack(stack.replace("memory_mib=512,", "memory_mib=1024,"))
    assert shown[1] in project.crane("plan").out


def test_the_tutorial_shows_stacks_demo_py() -> None:
    assert (REPO / "stacks" / "demo.py").read_text() in blocks("python", page("tutorial.md"))


def test_the_repository_crane_toml_is_shown_as_it_is() -> None:
    shown = [b for b in blocks("toml") if b.startswith("# crane project:")]
    assert shown and all(b == (REPO / "crane.toml").read_text() for b in shown)


def test_the_tinyweb_section_loads_and_validates_as_written(tmp_path: Path) -> None:
    section = next(b for b in blocks("toml", page("guides/real-hosts.md")) if b.startswith("# tinyweb\n"))
    (tmp_path / "crane.toml").write_text(section)
    project = load_project(tmp_path / "crane.toml")
    name, config = project.stack(None)
    assert (name, config.uri, config.file) == ("tinyweb", "qemu:///system", "stacks/tinyweb.py")
    # every variable the stack reads is declared, and it validates with the defaults shown
    used = set(re.findall(r'variable\("(\w+)"\)', (REPO / "stacks" / "tinyweb.py").read_text()))
    assert used == set(config.vars)
    (tmp_path / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "tinyweb.py", tmp_path / "stacks")
    result = ProjectDir(tmp_path).crane("validate", process=True)
    assert result.code == 0 and "is valid: 6 resources" in result.out, result.err


def test_the_two_endpoint_example_validates_as_written(tmp_path: Path) -> None:
    """The endpoints page's container and QEMU guest on one network: a container on the lxc endpoint naming a
    network of the qemu one of the same libvirtd loads (no connection), and the same on two hosts does not."""
    text = page("concepts/endpoints.md")
    [toml] = [b for b in blocks("toml", text) if "[stacks.lab.providers.lxc]" in b]
    [stack] = [b for b in blocks("python", text) if 'provider="lxc"' in b]
    (tmp_path / "crane.toml").write_text(toml)
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "lab.py").write_text(stack)
    project = ProjectDir(tmp_path)
    result = project.crane("validate")
    assert result.code == 0 and "is valid: 3 resources" in result.out, result.out + result.err
    (tmp_path / "crane.toml").write_text(toml.replace('"lxc:///system"', '"lxc+ssh://dc2/system"'))
    result = project.crane("validate")
    assert result.code == 1 and "lab.py:6" in result.err and "share no objects" in result.err, result.err


def test_the_workflow_edit_maps_onto_the_demo(tmp_path: Path) -> None:
    tutorial = page("tutorial.md")
    workflow = tutorial[tutorial.index("## The workflow"):tutorial.index("## Next")]
    expected = [line.split("#", 1)[1].split("   ")[0].strip() for line in workflow.splitlines() if "~ vm." in line]
    assert len(expected) == 2
    shutil.copy(REPO / "crane.toml", tmp_path)
    (tmp_path / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "demo.py", tmp_path / "stacks")
    project = ProjectDir(tmp_path)
    assert project.crane("apply", "--auto-approve", process=True).code == 0
    demo = tmp_path / "stacks" / "demo.py"
    web_line = next(line for line in demo.read_text().splitlines() if 'VM(f"web-{i}"' in line)
    assert "memory_mib=512" in web_line  # the line the tutorial tells the reader to edit
    demo.write_text(demo.read_text().replace(web_line, web_line.replace("memory_mib=512", "memory_mib=1024")))
    planned = project.crane("plan", "--detailed-exitcode", process=True)
    assert planned.code == 2
    for line in expected:
        assert line in planned.out, (line, planned.out)


def test_the_workspace_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guide = page("guides/providers.md")
    section = guide[guide.index("## The workspace API"):]
    example = next(b for b in re.findall(r"```python\n(.*?)```", section, re.S))
    shutil.copy(REPO / "crane.toml", tmp_path)
    (tmp_path / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "demo.py", tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"print": lambda *_a, **_k: None}
    exec(example, namespace)
    assert getattr(namespace["result"], "ok") is True  # noqa: B009 - the namespace's values are untyped
    vms = [d for d in ProjectDir(tmp_path).domains() if not d.startswith("shop-")]  # the app domain's containers
    assert vms == ["db", "web-1", "web-2", "web-3"]  # web_count=3 reached the stack


def test_the_autoscaled_stack_scales_out_on_the_sandbox(project: ProjectDir) -> None:
    """The autoscaling guide's stack as written, on the sandbox with simulated readings: one period scales it out,
    and the plan shows the size as the autoscaler's."""
    stack = next(b for b in blocks("python", page("guides/autoscaling.md")) if b.startswith("# autoscaled\n"))
    project.write_stack(stack)
    assert project.crane("apply", "--auto-approve").code == 0
    (project.root / ".crane" / "simulated-metrics.json").write_text('{"shop-web-1": 0.95, "shop-web-2": 0.9}')
    ran = project.crane("autoscale", "--once")
    assert ran.code == 0 and "appdomain.shop: out to 4 (scale-out)" in ran.out, ran.out + ran.err
    plan = project.crane("plan", "--detailed-exitcode")
    # nothing to apply, but the stack's own size is not the one in effect: a warning, and exit 2 (as the guide says)
    assert plan.code == 2 and "appdomain.shop web: size 4 in [2, 8], the stack says 2; set by autoscaler" in plan.out
    assert "appdomain.shop/web.size = 4, not the stack's 2: set by autoscaler" in plan.out
