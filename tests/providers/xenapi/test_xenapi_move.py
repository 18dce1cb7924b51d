"""A stack moved between the libvirt sandbox and a (simulated) XenServer pool by changing its endpoint's type in
crane.toml: the plan replaces each VM and network, said as such; apply makes them on the new hypervisor and deletes
them from the old one; a former endpoint crane cannot reach stops the plan with what to do."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.engine.backends import xen_config
from tests.providers.xenapi.conftest import PASSWORD_VAR, crane_networks, guests

STACK = '''from crane_iac import VM, Network
lan = Network("lan", mode="isolated", ipv4="10.9.0.0/24")
VM("web-1", vcpus=1, memory_mib=256, networks=[lan])
VM("web-2", vcpus=1, memory_mib=256, networks=[lan])
'''
SANDBOX = '[stacks.main]\nfile = "stacks/main.py"\n'


def _replaced(plan: str, old: str, new: str) -> None:
    # a VM made from a pool's template also shows its template going (a libvirt VM has none): the type says why
    for address in ("network.lan", "vm.web-1", "vm.web-2"):
        assert re.search(rf"-/\+ {re.escape(address)}  \(replace: endpoint type(, template)? cannot change in "
                         rf"place\)  # the endpoint's type changed from {old} to {new}: made anew on {new}, the old "
                         rf"one deleted from {old}", plan), plan
        assert f"-/+ {address}  endpoint type: {old} → {new}  # forces replacement" in plan, plan
    assert "Plan: 0 to create, 0 to update, 3 to replace, 0 to delete." in plan, plan
    assert "deleted outside crane" not in plan


@pytest.fixture
def project_on_both(project: ProjectDir, sim: Any, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, sim.password)
    project.write_stack(STACK)
    return project


def test_from_the_sandbox_to_a_pool(project_on_both: ProjectDir, sim: Any) -> None:
    project = project_on_both
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["web-1", "web-2"] and project.networks() == ["lan"]
    project.write_config(xen_config(sim))
    _replaced(ok(project, "plan"), "libvirt", "xenapi")
    assert project.domains() == ["web-1", "web-2"] and guests(sim) == {}  # a plan changes nothing
    ok(project, "apply", "--auto-approve")
    assert sorted(guests(sim)) == ["web-1", "web-2"] and crane_networks(sim) == ["lan"]
    assert project.domains() == [] and project.networks() == []  # deleted from the sandbox
    assert project.crane("plan", "--detailed-exitcode").code == 0
    ok(project, "destroy", "--auto-approve")
    assert guests(sim) == {} and crane_networks(sim) == []


def test_from_a_pool_to_the_sandbox_with_a_saved_plan(project_on_both: ProjectDir, sim: Any) -> None:
    project = project_on_both
    project.write_config(xen_config(sim))
    ok(project, "apply", "--auto-approve")
    assert sorted(guests(sim)) == ["web-1", "web-2"]
    project.write_config(SANDBOX)
    _replaced(ok(project, "plan", "--out", "move.crane"), "xenapi", "libvirt")
    ok(project, "apply", "move.crane")  # the saved plan opens the former endpoint again
    assert guests(sim) == {} and crane_networks(sim) == []  # deleted from the pool
    assert project.domains() == ["web-1", "web-2"] and project.networks() == ["lan"]
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_a_former_endpoint_out_of_reach_stops_the_plan(project_on_both: ProjectDir, sim: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_on_both
    project.write_config(xen_config(sim))
    ok(project, "apply", "--auto-approve")
    project.write_config(SANDBOX)
    monkeypatch.delenv(PASSWORD_VAR)  # the pool's password is no longer at hand
    before = project.snapshot()
    for command in ("plan", "apply"):
        assert_clean_error(project.crane(command, "--auto-approve") if command == "apply" else project.crane(command),
                           "endpoint 'default' is libvirt in crane.toml now, but network.lan, vm.web-1, vm.web-2 "
                           "were made on it when it was xenapi (at http://127.0.0.1:",
                           "crane cannot reach that xenapi endpoint", f"{PASSWORD_VAR} is not set",
                           "`crane state rm`")
    assert sorted(guests(sim)) == ["web-1", "web-2"] and project.snapshot() == before  # nothing touched
    assert not (project.root / ".crane" / "sandbox.xml").exists()
    # let go of them: they stay in the pool, and the stack is made on the sandbox
    ok(project, "state", "rm", "vm.web-1", "vm.web-2", "network.lan")
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["web-1", "web-2"] and sorted(guests(sim)) == ["web-1", "web-2"]


@pytest.mark.parametrize("failpoint", ["after-mutation:1", "after-mutation:4", "after-checkpoint"])
def test_a_move_killed_midway_converges(project_on_both: ProjectDir, sim: Any, failpoint: str) -> None:
    """SIGKILLed while moving (the old objects partly deleted, the new ones partly made): the next apply ends the
    move, with each guest once, in the pool."""
    project = project_on_both
    ok(project, "apply", "--auto-approve")
    project.write_config(xen_config(sim))
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint})
    assert killed.code == -signal.SIGKILL, killed
    ok(project, "apply", "--auto-approve")
    assert sorted(guests(sim)) == ["web-1", "web-2"] and crane_networks(sim) == ["lan"]
    assert project.domains() == [] and project.networks() == []
    assert project.crane("plan", "--detailed-exitcode").code == 0
