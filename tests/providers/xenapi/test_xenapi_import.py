"""A VM someone made in the pool (no crane keys in its other_config) is listed without an owner, and
``import_`` brings it under crane: recorded with its UUID, then owned like any other."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ProjectDir, ok
from tests.providers.xenapi.conftest import guests, write_project

STACK = '''from crane_iac import VM, import_
import_(to=VM("legacy", vcpus=1, memory_mib=1024, running=False))
'''


def test_a_vm_made_outside_crane_is_imported(xen: ProjectDir, sim: Any) -> None:
    from tests.xensim.sdk import login, new_vm

    with login(sim) as x:
        new_vm(x, "legacy", network=False)
    made = guests(sim)["legacy"]
    assert "crane/stack" not in made["other_config"]
    write_project(xen, sim, stack=STACK)
    plan = xen.crane("plan")
    assert plan.code == 0 and "import" in plan.out and "Plan: 0 to create" in plan.out, plan.out
    ok(xen, "apply", "--auto-approve")
    shown = json.loads(ok(xen, "state", "show", "vm.legacy"))
    assert shown["properties"]["memory_mib"] == 1024 and shown["properties"]["running"] is False, shown
    assert shown["outputs"]["uuid"] == made["uuid"], shown  # recorded as the plan read it
    assert sorted(guests(sim)) == ["legacy"]  # the same VM, not a new one
    plan = xen.crane("plan")
    assert "+ vm.legacy" not in plan.out and "replace" not in plan.out, plan.out
