"""``crane template`` and templates in stacks, against the sandbox: a build is refused with the reason (the sandbox
runs nothing); list and show read a library written by hand; a container on a template applies, a stale base is a
warning naming its address in the plan, a missing template a plan error, and removing a template a stack uses is
refused naming the stack and the address."""

from __future__ import annotations

import json
from pathlib import Path

from crane_iac.templates.library import Library
from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.templates.helpers import add_template, fake_root

STACK = """
from crane_iac import Container
Container("web", memory_mib=64, init=["/usr/bin/python3"], root="{root}", template="{template}")
"""


def project(tmp_path: Path, template: str = "cfd") -> tuple[ProjectDir, Path, Library]:
    p = ProjectDir(tmp_path / "project")
    p.root.mkdir()
    p.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    root = fake_root(tmp_path / "root")
    library = Library(p.root / ".crane" / "templates")
    add_template(library, "tools", "dir", str(root), content="sha256:tools")
    add_template(library, "cfd", "template", "tools", content="sha256:cfd")
    p.write_stack(STACK.format(root=root, template=template))
    return p, root, library


def test_a_build_in_the_sandbox_is_refused_with_the_reason(tmp_path: Path) -> None:
    p, _, _ = project(tmp_path)
    (p.root / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    assert_clean_error(p.crane("template", "build", "new", "--from", "/", "--playbook", "site.yml"),
                       "the sandbox runs no process", "--uri lxc:///system")


def test_list_and_show_print_the_manifest_and_the_lineage(tmp_path: Path) -> None:
    p, root, _ = project(tmp_path)
    listed = json.loads(ok(p, "template", "list", "--json"))
    assert [(r["name"], r["base"], r["stale"]) for r in listed] == [("cfd", "tools", False),
                                                                     ("tools", str(root), False)]
    shown = ok(p, "template", "show", "cfd")
    assert "content digest: sha256:cfd" in shown and "packages added: hello=2.10-3" in shown, shown
    assert "  cfd ← built on template tools (sha256:tools)" in shown, shown
    assert f"    tools ← built on dir {root} (sha256:" in shown, shown
    assert "state: current" in shown


def test_a_stale_base_is_a_warning_naming_the_address(tmp_path: Path) -> None:
    p, root, _ = project(tmp_path)
    ok(p, "apply", "--auto-approve")
    assert "Warning" not in ok(p, "plan")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="13"\n')  # the base was upgraded
    plan = ok(p, "plan")
    assert f"Warning: container.web: template 'tools' is stale: its base '{root}' changed" in plan, plan
    assert "No changes" in plan  # a warning, not a change
    assert json.loads(ok(p, "plan", "--json"))["warnings"][0]["address"] == "container.web"
    assert "stale" in ok(p, "template", "show", "cfd")


def test_removing_a_template_a_stack_uses_is_refused(tmp_path: Path) -> None:
    p, _, library = project(tmp_path)
    ok(p, "apply", "--auto-approve")
    assert_clean_error(p.crane("template", "rm", "cfd"), "template 'cfd' is in use by main: container.web")
    assert_clean_error(p.crane("template", "rm", "tools"), "'tools' is the base of cfd")
    ok(p, "destroy", "--auto-approve")
    ok(p, "template", "rm", "cfd")
    assert library.names() == ["tools"]


def test_a_missing_template_is_a_plan_error(tmp_path: Path) -> None:
    p, _, _ = project(tmp_path, template="nope")
    assert_clean_error(p.crane("plan"), "container.web", "no template 'nope'", "crane template build nope")


def test_a_template_on_another_root_is_a_plan_error(tmp_path: Path) -> None:
    p, _, _ = project(tmp_path)
    p.write_stack(STACK.format(root=tmp_path, template="cfd"))
    assert_clean_error(p.crane("plan"), "template 'cfd' was built on", f"give root='{tmp_path / 'root'}'")
