"""The workspace API in-process on sandboxes: what the CLI, the autoscaler and a watch loop all call."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest

from crane_iac.engine.workspace import PlanOptions, Workspace, read_plan
from crane_iac.errors import ConfigError, CraneError, DiagnosticsError, LockHeldError, StalePlanError, StaleStateError
from crane_iac.objects import Action, Reason
from crane_iac.planner.model import Plan, ResourceChange
from crane_iac.providers import registry
from crane_iac.render import render_plan
from tests.engine import memory_provider

TWO_ENDPOINTS = """
    [stacks.main]
    file = "stacks/main.py"
    [stacks.main.providers.dc2]
    # no uri: a sandbox of its own
"""

STACK = """
from crane_iac import VM, Network, export

lan = Network("lan", mode="nat", ipv4="10.70.0.0/24")
web = VM("web", vcpus=1, memory_mib={memory}, networks=[lan])
export("web-uuid", web.uuid)
"""


def project(tmp_path: Path, stack: str, config: str = '[stacks.main]\nfile = "stacks/main.py"\n') -> Path:
    (tmp_path / "crane.toml").write_text(textwrap.dedent(config))
    (tmp_path / "stacks").mkdir(exist_ok=True)
    (tmp_path / "stacks" / "main.py").write_text(textwrap.dedent(stack))
    return tmp_path


def domains(node_file: Path) -> list[str]:
    conn = libvirt.open(f"test://{node_file}")
    try:
        return sorted(d.name() for d in conn.listAllDomains(0))
    finally:
        conn.close()


def apply(ws: Workspace, options: PlanOptions | None = None) -> int:
    with ws.locked("apply") as run:
        result = run.apply(run.plan(options or PlanOptions()))
    assert result.ok, result.failed
    return result.serial


def test_plan_apply_and_no_op_in_process(tmp_path: Path) -> None:
    ws = Workspace.open(project(tmp_path, STACK.format(memory=256)))
    planned = ws.plan()
    assert {c.address: c.action for c in planned.changes} == {"network.lan": Action.CREATE, "vm.web": Action.CREATE}
    assert ws.state().serial == 0  # planning writes nothing
    serial = apply(ws)
    assert domains(tmp_path / ".crane" / "sandbox.xml") == ["web"]
    assert len(ws.outputs()["web-uuid"]) == 36 and ws.state().serial == serial
    assert not Workspace.open(tmp_path).plan().has_changes
    assert sorted((e.action, e.address) for e in ws.history()) == [("create", "network.lan"), ("create", "vm.web"),
                                                                  ("outputs", "(stack outputs)")]


def test_a_held_lock_refuses_a_second_run_but_not_a_plan(tmp_path: Path) -> None:
    ws = Workspace.open(project(tmp_path, STACK.format(memory=256)))
    with ws.locked("apply", connect=False, load=False) as run:
        with pytest.raises(LockHeldError, match=run.lock_id), \
                Workspace.open(tmp_path).locked("apply", connect=False, load=False):
            pass
        assert Workspace.open(tmp_path).plan().has_changes  # reading needs no lock
    with ws.locked("apply", connect=False, load=False):
        pass  # released on the way out


def test_a_saved_plan_is_refused_once_state_moved_on(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(memory=256))
    ws = Workspace.open(root)
    saved = ws.plan()
    apply(Workspace.open(root))
    with ws.locked("apply", load=False) as run, pytest.raises(StalePlanError, match="serial 0"):
        run.check_saved(saved, "plan.crane")


def test_variables_and_var_files_reach_the_stack(tmp_path: Path) -> None:
    config = '[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.vars]\nmemory = { type = "int", default = 128 }\n'
    root = project(tmp_path, STACK.replace("{memory}", 'variable("memory")').replace(
        "import VM, Network, export", "import VM, Network, export, variable"), config)
    (root / "big.toml").write_text("memory = 512\n")
    by_file = Workspace.open(root, var_files=[root / "big.toml"]).load().desired
    assert next(d for d in by_file if d.address == "vm.web").properties["memory_mib"] == 512
    by_option = Workspace.open(root, variables={"memory": "300"}, var_files=[root / "big.toml"]).load().desired
    assert next(d for d in by_option if d.address == "vm.web").properties["memory_mib"] == 300


def test_two_sandbox_endpoints_in_one_stack(tmp_path: Path) -> None:
    # two resources may not share an address: the second pair lives in a component on dc2
    stack = """
    from crane_iac import VM, Component, Network

    lan = Network("lan", mode="nat", ipv4="10.71.0.0/24")
    VM("web", vcpus=1, memory_mib=256, networks=[lan])

    class Site(Component):
        kind = "site"
        def build(self):
            net = Network("lan", mode="nat", ipv4="10.72.0.0/24")
            VM("web", vcpus=1, memory_mib=256, networks=[net])

    Site("east", provider="dc2")
    """
    root = project(tmp_path, stack, TWO_ENDPOINTS)
    ws = Workspace.open(root)
    planned = ws.plan()
    where = {c.address: c.endpoint for c in planned.changes}
    assert where == {"network.lan": "default", "vm.web": "default",
                     "site.east/network.lan": "dc2", "site.east/vm.web": "dc2"}
    text = render_plan(planned)
    assert " on endpoint default (2 changes):" in text and " on endpoint dc2 (2 changes):" in text
    assert text.index("on endpoint dc2") > text.index("+ vm.web")  # grouped, default first
    apply(ws)
    assert domains(root / ".crane" / "sandbox.xml") == ["web"]
    assert domains(root / ".crane" / "sandboxes" / "dc2" / "sandbox.xml") == ["east-web"]
    state = ws.state()
    assert state.resources["site.east/vm.web"].endpoint == "dc2" and state.resources["vm.web"].endpoint == "default"
    assert not Workspace.open(root).plan().has_changes

    # moving the component to the default endpoint replaces its resources there and removes them from dc2
    (root / "stacks" / "main.py").write_text(textwrap.dedent(stack).replace('Site("east", provider="dc2")',
                                                                            'Site("east")'))
    moved = Workspace.open(root).plan()
    vm = next(c for c in moved.changes if c.address == "site.east/vm.web")
    assert vm.action is Action.DELETE_THEN_CREATE and (vm.from_endpoint, vm.endpoint) == ("dc2", "default")
    assert vm.fields[0].name == "provider" and vm.fields[0].forces_replacement
    apply(Workspace.open(root))
    assert domains(root / ".crane" / "sandbox.xml") == ["east-web", "web"]
    assert domains(root / ".crane" / "sandboxes" / "dc2" / "sandbox.xml") == []


def test_an_undeclared_endpoint_names_the_line(tmp_path: Path) -> None:
    root = project(tmp_path, 'from crane_iac import Network\nNetwork("lan", mode="nat", ipv4="10.73.0.0/24",'
                             ' provider="dc9")\n')
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).plan()
    [problem] = caught.value.diagnostics
    assert (problem.line, problem.address) == (2, "network.lan")
    assert "provider='dc9' is not an endpoint of this stack; declared: default" in problem.summary


def test_an_unknown_provider_type_is_a_config_error(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(memory=256), TWO_ENDPOINTS + 'type = "vmware"\n')
    with pytest.raises(ConfigError, match="provider type 'vmware' is not known; known types: libvirt"):
        Workspace.open(root).plan()


def test_a_state_only_kind_is_not_recreated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILT_IN, "memo", "tests.engine.memory_provider:open_endpoint")
    memory_provider.MEMO_CALLS.clear()
    config = '[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.notes]\ntype = "memo"\n'
    stack = 'from tests.engine.memory_provider import Memo\nMemo("release", text="{text}", provider="notes")\n'
    root = project(tmp_path, stack.format(text="v1"), config)
    apply(Workspace.open(root))
    assert [(c.verb, c.physical) for c in memory_provider.MEMO_CALLS] == [("create", "release")]
    again = Workspace.open(root).plan()
    assert not again.has_changes and not again.drift  # not listed live, yet not "deleted outside crane"
    (root / "stacks" / "main.py").write_text(stack.format(text="v2"))
    update = Workspace.open(root).plan()
    assert [(c.address, c.action) for c in update.changes] == [("memo.release", Action.UPDATE)]

    # a memo on the libvirt endpoint: that provider type does not serve the kind
    (root / "stacks" / "main.py").write_text('from tests.engine.memory_provider import Memo\nMemo("x", text="a")\n')
    with pytest.raises(DiagnosticsError, match=r"endpoint 'default' \(libvirt\) does not serve memo resources"):
        Workspace.open(root).plan()


def test_a_targeted_apply_updates_the_outputs(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(memory=256))
    apply(Workspace.open(root))
    first = Workspace.open(root).outputs()["web-uuid"]
    ws = Workspace.open(root)
    apply(ws, PlanOptions(replace=("vm.web",), targets=("vm.web",)))
    assert ws.outputs()["web-uuid"] != first  # a new VM, a new UUID, recorded by the targeted apply


CBD = """
from crane_iac import VM, Network, Volume

lan = Network("lan", mode="nat", ipv4="10.74.0.0/24")
other = Network("other", mode="nat", ipv4="10.75.0.0/24")
VM("web", vcpus=1, memory_mib=256, networks=[{net}], create_before_destroy=True)
Volume("data", capacity_gib={size}, format="{fmt}", create_before_destroy=True)
"""


def test_create_before_destroy_names_the_replacement(tmp_path: Path) -> None:
    root = project(tmp_path, CBD.format(net="lan", size=1, fmt="qcow2"))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(CBD.format(net="other", size=1, fmt="raw"))
    planned = Workspace.open(root).plan()
    web = next(c for c in planned.changes if c.address == "vm.web")
    assert web.action is Action.CREATE_THEN_DELETE and (web.from_physical, web.physical) == ("web", "web-r2")
    assert web.after is not None and web.after["nics"][0]["mac"] != web.before["nics"][0]["mac"]  # new name: new MAC
    text = render_plan(planned)
    assert "+/- vm.web  name: web → web-r2  # forces replacement" in text, text
    assert "+/- volume.data  name: data → data-r2  # forces replacement" in text, text
    apply(Workspace.open(root))
    assert domains(root / ".crane" / "sandbox.xml") == ["web-r2"]
    state = Workspace.open(root).state()
    assert (state.resources["vm.web"].physical, state.resources["volume.data"].physical) == ("web-r2", "data-r2")
    assert not state.intents and not Workspace.open(root).plan().has_changes
    # the next replacement takes the next generation
    (root / "stacks" / "main.py").write_text(CBD.format(net="lan", size=1, fmt="raw"))
    assert next(c for c in Workspace.open(root).plan().changes if c.address == "vm.web").physical == "web-r3"


def test_create_before_destroy_is_refused_where_the_provider_cannot(tmp_path: Path) -> None:
    stack = """
    from crane_iac import VM, Network, Volume
    lan = Network("lan", mode="nat", ipv4="10.76.0.0/24", create_before_destroy=True)
    disk = Volume("disk", capacity_gib=1)
    VM("db", vcpus=1, memory_mib=256, networks=[lan], volumes=[disk], create_before_destroy=True)
    """
    root = project(tmp_path, stack)
    apply(Workspace.open(root))
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).plan(PlanOptions(replace=("network.lan", "vm.db")))
    messages = {d.address: d.summary for d in caught.value.diagnostics}
    assert "would claim the same bridge" in messages["network.lan"]
    assert "its disks (default/disk) would be used by two guests at once" in messages["vm.db"]


def test_an_apply_whose_lock_was_broken_does_not_record_over_the_new_holder(tmp_path: Path) -> None:
    """Someone broke this run's lock and changed the stack meanwhile: the run's writes carry the serial it read,
    so the store refuses them instead of silently recording over the other's; what it made is adopted later."""
    root = project(tmp_path, STACK.format(memory=256))
    ws = Workspace.open(root)
    with ws.locked("apply") as run:
        plan = run.plan()
        other = Workspace.open(root)
        other.break_lock(run.lock_id, force=True)
        other.set_setting("note", "taken over", by="ops", why="the first run looked stuck")
        with pytest.raises(StaleStateError, match="serial"):
            run.apply(plan)
    again = Workspace.open(root).plan()
    assert {c.address: c.reason for c in again.changes} == {"network.lan": Reason.ADOPTED, "vm.web": Reason.ADOPTED}
    apply(Workspace.open(root))
    assert domains(root / ".crane" / "sandbox.xml") == ["web"]  # one guest, not two


def test_a_resource_uses_by_name_only_what_is_on_its_own_endpoint(tmp_path: Path) -> None:
    stack = """
    from crane_iac import VM, Network
    lan = Network("lan", mode="nat", ipv4="10.83.0.0/24")
    web = VM("web", vcpus=1, memory_mib=256, networks=[lan], provider="dc2")
    VM("app", vcpus=1, memory_mib=256, networks=[lan], description=web.uuid)  # an output may cross
    """
    root = project(tmp_path, stack, TWO_ENDPOINTS)
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).load()
    [problem] = caught.value.diagnostics
    assert (problem.address, problem.line) == ("vm.web", 4)
    assert "networks: network.lan is on endpoint 'default' and this vm on 'dc2'" in problem.summary


def saved_plan(tmp_path: Path, damage: Callable[[dict[str, Any]], object]) -> Path:
    plan = Plan("main", "lineage-1", 7, changes=[ResourceChange("vm.web", "vm", "web", Action.CREATE,
                                                                after={"vcpus": 1})])
    data = json.loads(plan.to_json())
    damage(data)
    path = tmp_path / "p.crane"
    path.write_text(json.dumps(data))
    return path


def test_a_saved_plan_reads_back_as_it_was_written(tmp_path: Path) -> None:
    assert read_plan(saved_plan(tmp_path, lambda _: None)).changes[0].after == {"vcpus": 1}


@pytest.mark.parametrize(("damage", "named"), [
    # the hand-written reader took these as they were: a string serial, a string for a flag
    (lambda d: d.update(serial="7"), "serial: Input should be a valid integer"),
    (lambda d: d["changes"][0].update(protect="yes"), "changes.0.protect: Input should be a valid boolean"),
    (lambda d: d["changes"][0].update(action="explode"), "changes.0.action: Input should be 'create'"),
    (lambda d: d["changes"][0].pop("kind"), "changes.0.kind: Field required"),
    (lambda d: d.update(format_version=5), "plan format 5 is not"),
])
def test_a_damaged_saved_plan_is_an_error_naming_the_file_and_the_field(
        tmp_path: Path, damage: Callable[[dict[str, Any]], object], named: str) -> None:
    path = saved_plan(tmp_path, damage)
    with pytest.raises(CraneError) as caught:
        read_plan(path)
    assert str(caught.value).startswith(f"{path}: not a crane plan file (") and named in str(caught.value)


def test_a_saved_plan_that_is_no_object_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "p.crane").write_text("[1, 2]")
    with pytest.raises(CraneError, match=r"p\.crane: not a crane plan file \(plan format None"):
        read_plan(tmp_path / "p.crane")


SIZED = """
from crane_iac import VM, setting

VM("web", vcpus=1, memory_mib=setting("web.memory", 256))
"""


def test_a_plan_runs_the_stack_once_while_connecting_and_again_only_if_state_moved_on(tmp_path: Path) -> None:
    """The stack runs with what state lends it (settings, names, leases) while the endpoints connect; a setting
    written before the whole state is read makes it run again with that setting, not plan with the old one."""
    ws = Workspace.open(project(tmp_path, SIZED))
    apply(ws)
    early = ws.early_load()
    assert early[1] is not None and early[0].desired[0].properties["memory_mib"] == 256
    loaded, state = ws.load_with_state(early)
    assert loaded is early[0] and state.serial == early[1]  # the same serial: no second run

    ws.set_setting("web.memory", 512, by="test", why="a run meanwhile")
    loaded, state = ws.load_with_state(early)  # ran against the old serial
    assert state.serial > early[1]
    assert loaded is not early[0] and loaded.desired[0].properties["memory_mib"] == 512
    assert ws.early_load()[0].desired[0].properties["memory_mib"] == 512


def test_a_first_plan_runs_the_stack_before_it_makes_the_state_database(tmp_path: Path) -> None:
    """With no state database yet the stack runs without state while connecting; a broken stack then creates
    none."""
    ws = Workspace.open(project(tmp_path, SIZED.replace("256)", "256")))
    with pytest.raises(DiagnosticsError):
        ws.plan()
    assert not (tmp_path / ".crane" / "state.db").exists()
    ws = Workspace.open(project(tmp_path, SIZED))
    loaded, serial = ws.early_load()
    assert serial is None and not (tmp_path / ".crane" / "state.db").exists()
    assert ws.load_with_state((loaded, serial))[1].serial == 0
