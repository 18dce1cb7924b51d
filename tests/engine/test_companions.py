"""Companions: kinds that are not hypervisor objects, served beside every endpoint (providers/endpoint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crane_iac.engine.workspace import Workspace
from crane_iac.objects import Action
from crane_iac.providers import registry
from crane_iac.render import render_plan
from tests.engine import companion_double
from tests.engine.test_workspace import apply, project

STACK = """
from crane_iac import VM
from tests.engine.companion_double import Note

web = VM("web", vcpus=1, memory_mib=256)
Note("about-web", text="{text}", about=web.uuid)
"""


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILT_IN_COMPANIONS, "notebook", "tests.engine.companion_double:open_companion")
    companion_double.CALLS.clear()


def test_a_companion_kind_plans_and_applies_beside_the_hypervisors(tmp_path: Path, notebook: None) -> None:
    root = project(tmp_path, STACK.format(text="v1"))
    plan = Workspace.open(root).plan()
    note = next(c for c in plan.changes if c.address == "note.about-web")
    assert note.action is Action.CREATE and note.dependencies == ["vm.web"]
    assert note.note == "kept only: no guest to tell"  # the sandbox reaches no guest: the companion says so
    assert "+ note.about-web  # kept only: no guest to tell" in render_plan(plan)
    apply(Workspace.open(root))
    assert companion_double.CALLS == [("create", "about-web")]
    assert not Workspace.open(root).plan().has_changes  # state-only, not listed, not gone

    (root / "stacks" / "main.py").write_text(STACK.format(text="v2"))
    update = Workspace.open(root).plan()
    assert [(c.address, c.action, [f.note for f in c.fields]) for c in update.changes] == \
        [("note.about-web", Action.UPDATE, ["writes it again"])]
    apply(Workspace.open(root))
    assert companion_double.CALLS[-1] == ("update", "about-web")

    (root / "stacks" / "main.py").write_text("from crane_iac import VM\nVM('web', vcpus=1, memory_mib=256)\n")
    apply(Workspace.open(root))
    assert companion_double.CALLS[-1] == ("delete", "about-web")


def test_a_companion_kind_needs_its_companion(tmp_path: Path) -> None:
    from crane_iac.errors import DiagnosticsError

    root = project(tmp_path, STACK.format(text="v1"))
    with pytest.raises(DiagnosticsError, match=r"endpoint 'default' \(libvirt\) does not serve note resources"):
        Workspace.open(root).plan()
