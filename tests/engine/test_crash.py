"""SIGKILL `crane apply` at several points; the next apply converges with no orphaned or duplicated object, on the
libvirt sandbox and on a simulated XenServer pool alike (``backend``: tests/engine/backends.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

import pytest

from crane_iac.objects import Owner
from tests.conftest import CRANE, ProjectDir
from tests.engine.backends import Backend, backend_fixture, make_behind  # noqa: F401
from tests.waiting import wait_until

STACK = """
from crane_iac import VM, Network, Volume
lan = Network("lan", mode="{mode}", ipv4="10.70.0.0/24")
for i in range({count}):
    disks = [Volume(f"disk-{{i}}", capacity_gib=1)] if {volumes} else []
    VM(f"vm-{{i}}", vcpus=1, memory_mib={memory}, max_memory_mib=1024, networks=[lan], volumes=disks)
"""


def stack(backend: Backend, count: int, memory: int) -> str:
    """VMs on a network, each with a volume where the hypervisor has them."""
    return STACK.format(mode=backend.network_mode, count=count, memory=memory, volumes=backend.volumes)


def expected(backend: Backend, count: int) -> tuple[list[str], list[str]]:
    """The VMs and the addresses the stack's apply leaves."""
    vms = sorted(f"vm-{i}" for i in range(count))
    disks = sorted(f"disk-{i}" for i in range(count)) if backend.volumes else []
    return vms, sorted(["network.lan", *(f"vm.{v}" for v in vms), *(f"volume.{d}" for d in disks)])


def assert_converged(project: ProjectDir, backend: Backend, count: int) -> None:
    vms, addresses = expected(backend, count)
    assert backend.vms() == vms  # no orphan, no duplicate
    assert backend.networks() == ["lan"]
    assert backend.leftovers() == []  # no half-made clone, no guest left stopped
    if backend.volumes:
        conn = project.sandbox()
        try:
            disks = sorted(v.name() for v in conn.storagePoolLookupByName("default").listAllVolumes(0))
            assert disks == sorted(f"disk-{i}" for i in range(count))
        finally:
            conn.close()
    assert project.crane("state", "list").out.split() == addresses
    assert project.crane("plan", "--detailed-exitcode").code == 0


def in_flight(project: ProjectDir) -> tuple[int, int]:
    """(intents not yet done, resources recorded) in the project's state: a crash mid-apply leaves intents."""
    db = sqlite3.connect(f"file:{project.root / '.crane' / 'state.db'}?mode=ro", uri=True)
    try:
        return (db.execute("SELECT count(*) FROM intents").fetchone()[0],
                db.execute("SELECT count(*) FROM resources").fetchone()[0])
    finally:
        db.close()


# after-commit is slowed so that there are several batches (61 steps on the sandbox, 31 on the pool, 10 at a time, at
# least 0.2 s each: past the first commit at 0.5 s): on a fast machine the first batch would otherwise be the whole
# apply
@pytest.mark.parametrize("failpoint", ["after-intents", "after-mutation:1", "after-mutation:25", "after-checkpoint",
                                       "slow:0.2,after-commit"])
def test_killed_create_converges(project: ProjectDir, backend: Backend, failpoint: str) -> None:
    project.write_stack(stack(backend, 30, 256))
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint})
    assert killed.code == -signal.SIGKILL, killed.err
    intents, recorded = in_flight(project)
    total = len(expected(backend, 30)[1])
    assert intents > 0 and recorded < total, (intents, recorded)  # killed mid-apply: some intents are not done
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    assert_converged(project, backend, 30)


def test_objects_created_but_not_recorded_are_adopted_or_deleted(project: ProjectDir, backend: Backend) -> None:
    project.write_stack(stack(backend, 20, 256))
    assert project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-checkpoint"}).code < 0
    assert project.crane("state", "list").out == ""
    # on the hypervisor, unknown to state: all on the sandbox (one batch), those of the first batch on the pool
    made = backend.vms() + backend.half_made()
    assert len(made) == 20 if backend.name == "sandbox" else 0 < len(made) <= 20, made
    project.write_stack(stack(backend, 12, 256))
    plan = project.crane("plan").out
    planned: dict[str, str] = {}
    for line in plan.splitlines():  # each address's first line (its fields may follow, one a line)
        if len(parts := line.split()) > 1:
            planned.setdefault(parts[1], line)
    for i in range(20):
        line = planned.get(f"vm.vm-{i}", "")
        if f"vm-{i}" not in made:
            assert line == ("" if i >= 12 else f"  + vm.vm-{i}"), plan
        elif i >= 12:
            assert line == f"  - vm.vm-{i}  (orphan: created by crane but never recorded)", plan
        else:  # adopted, not created twice; on the pool, a VM the kill caught half-made is replaced too
            assert line.startswith(("  = ", "  ~ ", "  -/+ ")), plan
            assert line.endswith("(adopted: created by crane but not recorded)"), plan
    assert project.crane("apply", "--auto-approve").code == 0
    assert_converged(project, backend, 12)


@pytest.mark.parametrize("failpoint", ["after-mutation:3", "after-checkpoint"])
def test_killed_update_and_destroy_converge(project: ProjectDir, backend: Backend, failpoint: str) -> None:
    project.write_stack(stack(backend, 10, 256))
    assert project.crane("apply", "--auto-approve").code == 0
    project.write_stack(stack(backend, 10, 512))
    assert project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint}).code == -signal.SIGKILL
    assert in_flight(project)[0] > 0
    assert project.crane("apply", "--auto-approve").code == 0
    assert_converged(project, backend, 10)
    assert {backend.memory_mib(name) for name in backend.vms()} == {512}
    assert project.crane("destroy", "--auto-approve", env={"CRANE_FAILPOINT": failpoint}).code == -signal.SIGKILL
    assert in_flight(project)[0] > 0
    assert project.crane("destroy", "--auto-approve").code == 0
    assert backend.vms() == [] and backend.networks() == [] and project.crane("state", "list").out == ""


@pytest.mark.parametrize("failpoint", ["after-intents", "after-mutation:40", "after-checkpoint",
                                       "slow:0.02,after-commit:1"])
def test_sigkill_from_outside_mid_apply(project: ProjectDir, backend: Backend, failpoint: str) -> None:
    """Another process SIGKILLs the apply once it has reached the failpoint (it pauses there and says so in a file;
    its other threads go on), so the kill lands mid-apply however fast or slow this machine is: on the pool, in the
    middle of other VMs' clones and starts."""
    project.write_stack(stack(backend, 150, 256))
    marker = project.root / "paused"
    env = {**os.environ, "NO_COLOR": "1", "CRANE_FAILPOINT": failpoint, "CRANE_FAILPOINT_PAUSE": str(marker)}
    proc = subprocess.Popen([*CRANE, "apply", "--auto-approve", "--parallelism", "4"], cwd=project.root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, 120, f"apply paused at {failpoint}")
    finally:
        proc.send_signal(signal.SIGKILL)
        err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, f"apply exited ({proc.returncode}) before {failpoint}: {err}"
    assert int(marker.read_text()) == proc.pid
    total = len(expected(backend, 150)[1])  # 150 VMs, a network and, on the sandbox, 150 volumes
    intents, recorded = in_flight(project)
    assert intents > 0 and recorded < total, (intents, recorded)
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    assert_converged(project, backend, 150)
    assert in_flight(project) == (0, total)


def test_module_runs_as_crane() -> None:
    assert subprocess.run([*CRANE, "--version"], capture_output=True, text=True).stdout.startswith("crane ")


CBD_STACK = """
from crane_iac import VM, Network

lan = Network("lan", mode="{mode}", ipv4="10.78.0.0/24")
other = Network("other", mode="{mode}", ipv4="10.79.0.0/24")
VM("web", vcpus=1, memory_mib=256, networks=[{net}], create_before_destroy=True)
"""


def test_killed_create_before_destroy_leaves_one_guest(project: ProjectDir, backend: Backend) -> None:
    project.write_stack(CBD_STACK.format(net="lan", mode=backend.network_mode))
    assert project.crane("apply", "--auto-approve").code == 0
    project.write_stack(CBD_STACK.format(net="other", mode=backend.network_mode))  # new NICs: a replacement, made first
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-mutation:2"})
    assert killed.code == -signal.SIGKILL
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    # one guest, the one state records: the sandbox loses what the kill caught before its checkpoint and makes the
    # replacement again; the pool had the replacement made and the old guest deleted already (an unrecorded web-r2,
    # found by its owner), which the next apply replaces under the name the stack pins (its recorded one)
    recorded = json.loads(project.crane("state", "show", "vm.web").out)
    assert backend.vms() == [recorded["name"]] and backend.leftovers() == []
    if backend.name == "sandbox":
        assert recorded["name"] == "web-r2"
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_a_deposed_half_of_a_replacement_is_deleted(project: ProjectDir, backend: Backend) -> None:
    """A crash between a create_before_destroy's create and its delete leaves a second object that names the same
    address as its owner: the next plan deletes it (deposed), whichever half state holds."""
    project.write_stack(CBD_STACK.format(net="lan", mode=backend.network_mode))
    assert project.crane("apply", "--auto-approve").code == 0
    recorded = json.loads(project.crane("state", "show", "vm.web").out)["properties"]
    make_behind(backend, "vm", "web-r2", {**recorded, "nics": []}, Owner("main", "vm.web"))
    assert backend.vms() == ["web", "web-r2"]
    plan = project.crane("plan")
    assert "- vm.web#deposed:web-r2  (orphan: created by crane but never recorded)" in plan.out, plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert backend.vms() == ["web"] and backend.leftovers() == []
    assert project.crane("plan", "--detailed-exitcode").code == 0
