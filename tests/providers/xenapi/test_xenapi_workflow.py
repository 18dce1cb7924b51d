"""The workflow on a (simulated) XenServer pool, through crane's CLI: plan, apply, a no-op re-plan, drift behind
crane's back (a VM destroyed, one resized), replace, destroy; a stack with a libvirt sandbox endpoint and a pool
applied in one run; and the pool's round trips for a plan that do not grow with the stack."""

from __future__ import annotations

import json
from typing import Any

import libvirt

from tests.conftest import ProjectDir, ok
from tests.providers.xenapi.conftest import crane_networks, guests, write_project


def test_plan_apply_noop_drift_replace_destroy(xen: ProjectDir, sim: Any) -> None:
    plan = xen.crane("plan")
    assert plan.code == 0 and "Plan: 3 to create" in plan.out, plan
    applied = ok(xen, "apply", "--auto-approve")
    assert "vm.web-1: VM.clone done (" in applied, applied  # the pool's tasks' progress, under each step
    made = guests(sim)
    assert sorted(made) == ["web-1", "web-2"]
    web1 = made["web-1"]
    assert web1["other_config"]["crane/stack"] == "main" and web1["other_config"]["crane/address"] == "vm.web-1"
    assert web1["power_state"] == "Running" and int(web1["memory_dynamic_max"]) == 256 * 1024 * 1024
    assert crane_networks(sim) == ["lan"]
    shown = json.loads(ok(xen, "state", "show", "vm.web-1"))
    assert shown["outputs"]["uuid"] == web1["uuid"]
    assert shown["outputs"]["ipv4"], shown  # the guest tools' address, waited for
    assert shown["properties"]["nics"][0]["mac"].startswith("52:54:00:")
    # read back as made: nothing to do
    assert xen.crane("plan", "--detailed-exitcode").code == 0

    # drift: one VM destroyed and one resized behind crane's back
    sim.backdoor.destroy_vm("web-2")
    sim.backdoor.set_memory("web-1", 512)
    plan = xen.crane("plan")
    assert "+ vm.web-2" in plan.out and "~ vm.web-1" in plan.out, plan.out
    ok(xen, "apply", "--auto-approve")
    assert int(guests(sim)["web-1"]["memory_dynamic_max"]) == 256 * 1024 * 1024
    assert sorted(guests(sim)) == ["web-1", "web-2"]
    assert xen.crane("plan", "--detailed-exitcode").code == 0

    # an in-place change on the running guest, then a forced replacement (a new VM, a new UUID)
    ok(xen, "apply", "--auto-approve", "--var", "memory=384")
    assert int(guests(sim)["web-1"]["memory_dynamic_max"]) == 384 * 1024 * 1024
    before = guests(sim)["web-1"]["uuid"]
    out = ok(xen, "apply", "--auto-approve", "--var", "memory=384", "--replace", "vm.web-1")
    assert "replace" in out.lower(), out
    assert guests(sim)["web-1"]["uuid"] != before
    assert xen.crane("plan", "--detailed-exitcode", "--var", "memory=384").code == 0

    ok(xen, "destroy", "--auto-approve", "--var", "memory=384")
    assert guests(sim) == {} and crane_networks(sim) == []
    # the template stays a template, and no disk is left behind
    assert not [vdi for vdi in sim.backdoor.records("VDI").values() if not vdi["VBDs"] and
                vdi["name_label"] != "base"  # the SR's own
                and "crane" in json.dumps(vdi.get("other_config", {}))]


def test_a_stack_with_a_libvirt_sandbox_and_a_pool_applies_in_one_run(project: ProjectDir, sim: Any,
                                                                       monkeypatch: Any) -> None:
    monkeypatch.setenv("CRANE_TEST_XEN_PASSWORD", sim.password)
    write_project(project, sim, stack='''from crane_iac import VM, Network
lan = Network("lan", mode="isolated")
VM("xen-web", vcpus=1, memory_mib=256, networks=[lan])
lab = Network("lab-net", mode="isolated", ipv4="10.7.0.0/24", provider="lab")
VM("kvm-web", vcpus=1, memory_mib=256, networks=[lab], provider="lab")
''', extra='[stacks.main.providers.lab]\ntype = "libvirt"\n')
    ok(project, "apply", "--auto-approve")
    assert sorted(guests(sim)) == ["xen-web"]
    lab = libvirt.open(f"test://{project.root / '.crane' / 'sandboxes' / 'lab' / 'sandbox.xml'}")
    try:
        assert [d.name() for d in lab.listAllDomains(0)] == ["kvm-web"]
    finally:
        lab.close()
    assert project.crane("plan", "--detailed-exitcode").code == 0
    ok(project, "destroy", "--auto-approve")
    assert guests(sim) == {}


def test_a_no_op_plan_makes_as_many_round_trips_for_ten_vms_as_for_two(xen: ProjectDir, sim: Any) -> None:
    counts = []
    for web in (2, 10):
        ok(xen, "apply", "--auto-approve", "--var", f"web={web}")
        start = sim.round_trips
        assert xen.crane("plan", "--detailed-exitcode", "--var", f"web={web}").code == 0
        counts.append(sim.round_trips - start)
    assert counts[0] == counts[1], counts
