"""The user's workflow through the real `crane` command on the sandbox hypervisor."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from crane_iac.state.sql import locks
from tests.conftest import REPO, ProjectDir, assert_clean_error
from tests.engine.backends import Backend, backend_fixture  # noqa: F401

STACK = """
from crane_iac import VM, Network, Volume, export

lan = Network("lan", mode="{mode}", ipv4="10.60.0.0/24", ipv6="fd00:60::/64")
disks = []
if {volumes}:
    base = Volume("base", capacity_gib=2)
    disks = [Volume("web-1-root", capacity_gib=4, base=base)]
web = VM("web-1", vcpus=1, memory_mib={memory}, max_memory_mib=2048, networks=[lan], volumes=disks)
VM("web-2", vcpus=1, memory_mib=512, networks=[lan], description=web.uuid)
export("web-1-mac", web.macs[0])
export("web-1-uuid", web.uuid)
"""


def stack(memory: int, backend: Backend | None = None) -> str:
    """The stack on the sandbox (a NAT network, a disk from a base volume) or as the backend has it (the pool: an
    internal network, the template's disks)."""
    return STACK.format(memory=memory, mode=backend.network_mode if backend else "nat",
                        volumes=backend.volumes if backend else True)


def test_plan_apply_edit_apply_destroy(project: ProjectDir, backend: Backend) -> None:
    """The core workflow on the sandbox and on a (simulated) XenServer pool alike: plan, apply, a no-op plan, an
    edit planned to a file and applied, a stale plan refused, destroy."""
    project.write_stack(stack(512, backend))
    first = project.crane("plan", "--detailed-exitcode", process=True)  # the real command: exit codes, output
    count = 5 if backend.volumes else 3
    assert first.code == 2 and "+ vm.web-1" in first.out and f"Plan: {count} to create" in first.out, first
    assert project.crane("apply", "--auto-approve").code == 0
    assert backend.vms() == ["web-1", "web-2"] and backend.networks() == ["lan"]
    again = project.crane("plan", "--detailed-exitcode")
    assert (again.code, again.out.strip()) == (0, "No changes. The infrastructure matches the stack.")

    # the output of one resource feeds another and the stack's outputs
    uuid = project.crane("output", "web-1-uuid").out.strip()
    assert len(uuid) == 36
    shown = json.loads(project.crane("state", "show", "vm.web-2").out)
    assert shown["properties"]["description"] == uuid and shown["dependencies"] == ["network.lan", "vm.web-1"]

    project.write_stack(stack(1024, backend))
    planned = project.crane("plan", "--out", "plan.crane", "--detailed-exitcode")
    assert planned.code == 2
    assert "~ vm.web-1  memory_mib: 512 → 1024" in planned.out
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete." in planned.out
    applied = project.crane("apply", "plan.crane", process=True)
    assert applied.code == 0, applied.err
    assert "vm.web-1: updated" in applied.out
    assert backend.memory_mib("web-1") == 1024
    assert project.crane("plan", "--detailed-exitcode").code == 0

    # the same saved plan again is stale
    stale = project.crane("apply", "plan.crane")
    assert_clean_error(stale, "is stale", "run `crane plan` again")

    history = project.crane("state", "history").out
    assert "update   vm.web-1" in history and "create   vm.web-2" in history
    destroyed = project.crane("destroy", "--auto-approve")
    assert destroyed.code == 0, destroyed.err
    assert backend.vms() == [] and backend.networks() == [] and backend.leftovers() == []
    assert project.crane("state", "list").out == ""


def test_restart_and_replace_are_planned_and_applied(project: ProjectDir, backend: Backend) -> None:
    project.write_stack('from crane_iac import VM\nVM("db", vcpus=2, max_vcpus=4, memory_mib=512)\n')
    assert project.crane("apply", "--auto-approve").code == 0
    old_uuid = backend.guest("db")[0]
    # fewer vCPUs: neither hypervisor unplugs them live, so the guest is restarted with them (libvirt defines the
    # domain anew; XenServer sets VCPUs_at_startup on the halted VM)
    project.write_stack('from crane_iac import VM\nVM("db", vcpus=1, max_vcpus=4, memory_mib=512)\n')
    plan = project.crane("plan")
    assert "~ vm.db  vcpus: 2 → 1  # restarts the guest" in plan.out and "1 to update" in plan.out, plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert backend.guest("db") == (old_uuid, 1, True)
    assert project.crane("plan", "--detailed-exitcode").code == 0
    # what neither changes in place: a new disk on the sandbox, a new NIC on the pool; a new guest
    if backend.volumes:
        project.write_stack('from crane_iac import VM, Volume\n'
                            'VM("db", vcpus=1, max_vcpus=4, memory_mib=512, volumes=[Volume("d", capacity_gib=1)])\n')
        why = "disks"
    else:
        project.write_stack('from crane_iac import VM, Network\nlan = Network("lan", mode="isolated")\n'
                            'VM("db", vcpus=1, max_vcpus=4, memory_mib=512, networks=[lan])\n')
        why = "nics"
    plan = project.crane("plan")
    assert f"-/+ vm.db  (replace: {why} cannot change in place)" in plan.out, plan.out
    assert "# forces replacement" in plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert backend.vms() == ["db"] and backend.guest("db")[0] != old_uuid
    forced = project.crane("plan", "--replace", "vm.db")
    assert "-/+ vm.db" in forced.out and "--replace" in forced.out
    assert project.crane("apply", "--auto-approve", "--replace", "vm.db").code == 0
    assert backend.vms() == ["db"] and backend.leftovers() == []


def test_json_plan_schema(project: ProjectDir) -> None:
    project.write_stack(stack(512))
    result = project.crane("plan", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["format_version"] == 11 and data["stack"] == "main" and data["serial"] == 0
    actions = {c["address"]: c["action"] for c in data["changes"]}
    assert actions == {a: "create" for a in ("network.lan", "volume.base", "volume.web-1-root", "vm.web-1", "vm.web-2")}
    web2 = next(c for c in data["changes"] if c["address"] == "vm.web-2")
    assert web2["after"]["description"] == {"$output": "vm.web-1", "attribute": "uuid"}


def test_drift_is_shown_apart_and_corrected(project: ProjectDir, backend: Backend) -> None:
    project.write_stack(stack(512, backend))
    assert project.crane("apply", "--auto-approve").code == 0
    # change things behind crane's back: another client of the hypervisor resizes one guest and deletes the other
    backend.set_memory("web-1", 768)
    backend.delete_vm("web-2")
    plan = project.crane("plan", "--detailed-exitcode")
    assert plan.code == 2
    drift, _, changes = plan.out.partition("crane will make these changes")
    assert "! vm.web-1  memory_mib: 512 → 768" in drift
    assert "! vm.web-2  deleted outside crane" in drift
    assert "~ vm.web-1  memory_mib: 768 → 512" in changes and "+ vm.web-2" in changes
    no_refresh = project.crane("plan", "--refresh=false", "--detailed-exitcode")
    assert no_refresh.code == 0
    refreshed = project.crane("refresh")
    assert f"2 of {5 if backend.volumes else 3} records updated" in refreshed.out
    assert "vm.web-2" not in project.crane("state", "list").out
    assert project.crane("apply", "--auto-approve").code == 0
    assert backend.vms() == ["web-1", "web-2"] and backend.memory_mib("web-1") == 512
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_target_limits_to_address_and_dependencies(project: ProjectDir) -> None:
    project.write_stack(stack(512))
    plan = project.crane("plan", "--target", "vm.web-1")
    assert "+ vm.web-1" in plan.out and "+ volume.base" in plan.out and "+ network.lan" in plan.out
    assert "+ vm.web-2" not in plan.out
    assert "Warning: targeting is in effect" in plan.out and "1 other resource(s) have changes pending" in plan.out
    assert project.crane("apply", "--auto-approve", "--target", "vm.web-1").code == 0
    assert project.domains() == ["web-1"]
    unknown = project.crane("plan", "--target", "vm.nope")
    assert_clean_error(unknown, "no resource 'vm.nope'")


def test_protect_refuses_destroy(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("db", vcpus=1, memory_mib=256, protect=True)\n')
    assert project.crane("apply", "--auto-approve").code == 0
    result = project.crane("destroy", "--auto-approve")
    assert_clean_error(result, "vm.db: is protected")
    assert project.domains() == ["db"]


def test_variables_from_config_and_command_line(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.main.vars]
        count = { type = "int", default = 2 }
    """)
    project.write_stack('from crane_iac import VM, variable\n'
                        'for i in range(variable("count")):\n    VM(f"w{i}", vcpus=1, memory_mib=128)\n')
    assert "Plan: 2 to create" in project.crane("plan").out
    assert "Plan: 3 to create" in project.crane("plan", "--var", "count=3").out
    assert_clean_error(project.crane("plan", "--var", "count=many"), "variable 'count': 'many' is not an int")
    assert_clean_error(project.crane("plan", "--var", "size=3"), "--var size: not a variable of this stack")


def test_bad_config_names_file_and_line(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\nproviderr = "libvirt"\n')
    assert_clean_error(project.crane("plan"), "crane.toml:3", "providerr")
    project.write_config('[stacks.main\nfile = "x"\n')
    assert_clean_error(project.crane("plan"), "crane.toml", "line 1")
    project.write_config('[stacks.main]\nfile = "stacks/missing.py"\n')
    assert_clean_error(project.crane("plan"), "stacks/missing.py, which does not exist")
    assert not (project.root / ".crane" / "state.db").exists()


def test_graph_and_state_files(project: ProjectDir) -> None:
    project.write_stack(stack(512))
    dot = project.crane("graph").out
    assert '"vm.web-1" -> "network.lan";' in dot and '"vm.web-2" -> "vm.web-1";' in dot
    assert project.crane("apply", "--auto-approve").code == 0
    mode = stat.S_IMODE(os.stat(project.root / ".crane" / "state.db").st_mode)
    assert mode == 0o600


def test_held_lock_fails_fast_or_waits(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    # the holder holds the stack's lock until the test sends it a line (or closes its stdin)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
         "from crane_iac.state.sql import SqlStateStore; s = SqlStateStore(sys.argv[2]);"
         "i = s.acquire_lock('main', 'apply'); print('locked', flush=True); sys.stdin.readline();"
         "s.release_lock('main', i)",
         str(REPO), f"sqlite:///{project.root}/.crane/state.db"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = project.crane("apply", "--auto-approve")  # refused at once: the holder holds the lock
        assert holder.poll() is None
        assert_clean_error(result, "stack 'main' is locked by", f"pid {holder.pid}", "--lock-timeout")
        assert not (project.root / ".crane" / "sandbox.xml").exists()  # the hypervisor was never touched

        # with --lock-timeout the run waits: the first time it is refused and pauses before trying again, the
        # holder is told to release (and has, when the pause returns), so the run is known to have waited for it
        retries: list[float] = []

        def pause_then_release(seconds: float) -> None:
            retries.append(seconds)
            if holder.poll() is None:
                assert holder.stdin is not None
                holder.stdin.write("release\n")
                holder.stdin.flush()
                assert holder.wait(30) == 0

        monkeypatch.setattr(locks, "time", SimpleNamespace(monotonic=time.monotonic, sleep=pause_then_release))
        waited = project.crane("apply", "--auto-approve", "--lock-timeout", "60")
        assert waited.code == 0, waited.err
        assert len(retries) == 1  # refused once while held, then took the lock
    finally:
        holder.stdin.close()  # a holder not yet told ends its readline and releases
        holder.wait(30)
        holder.stdout.close()
    assert project.domains() == ["a"]


def test_stale_plan_for_another_stack(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.other]
        file = "stacks/main.py"
    """)
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    assert project.crane("plan", "--stack", "main", "--out", "p.crane").code == 0
    assert_clean_error(project.crane("apply", "p.crane", "--stack", "other"), "was made for stack 'main'")
    assert_clean_error(project.crane("plan"), "several stacks are declared")


def test_several_stacks_take_a_default_from_crane_toml_or_the_environment(project: ProjectDir,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = """
        {top}
        [stacks.main]
        file = "stacks/main.py"
        [stacks.other]
        file = "stacks/other.py"
    """
    project.write_config(config.format(top=""))
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    project.write_stack('from crane_iac import VM\nVM("b", vcpus=1, memory_mib=128)\n', name="other.py")
    for command in ("plan", "apply", "destroy"):
        assert_clean_error(project.crane(command),
                           "several stacks are declared (main, other) and none is the default",
                           "--stack NAME", 'default_stack = "NAME"')
    project.write_config(config.format(top='default_stack = "other"'))
    assert "+ vm.b" in project.crane("plan").out
    assert project.crane("apply", "--auto-approve").code == 0 and project.domains() == ["b"]
    assert "+ vm.a" in project.crane("plan", "--stack", "main").out
    # --stack, then CRANE_STACK, then default_stack
    monkeypatch.setenv("CRANE_STACK", "main")
    assert "+ vm.a" in project.crane("plan").out
    assert project.crane("plan", "--stack", "other", "--detailed-exitcode").code == 0
    monkeypatch.setenv("CRANE_STACK", "mian")
    assert_clean_error(project.crane("plan"), "CRANE_STACK=mian:", "declares no stack 'mian'; did you mean 'main'?")
    monkeypatch.delenv("CRANE_STACK")
    assert project.crane("destroy", "--auto-approve").code == 0 and project.domains() == []
    project.write_config(config.format(top='default_stack = "othre"'))
    assert_clean_error(project.crane("plan", "--stack", "main"),
                       "crane.toml:2: default_stack: no stack 'othre'; did you mean 'other'?")


def test_no_terminal_needs_auto_approve(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    assert_clean_error(project.crane("apply"), "stdin is not a terminal", "pass --auto-approve")
    assert not (project.root / ".crane" / "sandbox.xml").exists()


def test_outputs_state_show_and_force_unlock(project: ProjectDir) -> None:
    project.write_stack(stack(512))
    assert project.crane("apply", "--auto-approve").code == 0
    outputs = json.loads(project.crane("output", "--json").out)
    assert set(outputs) == {"web-1-mac", "web-1-uuid"} and outputs["web-1-mac"].startswith("52:54:00:")
    assert_clean_error(project.crane("output", "nope"), "no output 'nope'")
    assert_clean_error(project.crane("state", "show", "vm.nope"), "no resource 'vm.nope' in state")
    from crane_iac.state.sql import SqlStateStore

    store = SqlStateStore(f"sqlite:///{project.root}/.crane/state.db")
    lock_id = store.acquire_lock("main", "apply")  # held by this (live) test process
    assert_clean_error(project.crane("apply", "--auto-approve"), f"crane force-unlock {lock_id}")
    # a live holder on this host is not broken without --force, and a wrong ID never
    assert_clean_error(project.crane("force-unlock", lock_id), "still running on this host", "--force")
    assert_clean_error(project.crane("force-unlock", "not-the-id", "--force"), f"locked with ID {lock_id}")
    assert store.lock_info("main") is not None
    unlocked = project.crane("force-unlock", lock_id, "--force")
    assert unlocked.code == 0 and f"pid {os.getpid()}" in unlocked.out
    assert f"force-unlock lock {lock_id}" in project.crane("state", "history").out
    newer = store.acquire_lock("main", "apply")
    store.release_lock("main", lock_id)  # the old holder's late release leaves the lock taken since alone
    assert store.lock_info("main").id == newer  # type: ignore[union-attr]
    store.release_lock("main", newer)
    assert project.crane("apply", "--auto-approve").code == 0
    assert_clean_error(project.crane("force-unlock", lock_id), "is not locked")
    store.close()
