"""SIGKILL `crane apply` at several points; the next apply converges with no orphaned or duplicated object."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

import pytest

from tests.conftest import CRANE, ProjectDir
from tests.waiting import wait_until

STACK = """
from crane_iac import VM, Network, Volume
lan = Network("lan", ipv4="10.70.0.0/24")
for i in range({count}):
    disk = Volume(f"disk-{{i}}", capacity_gib=1)
    VM(f"vm-{{i}}", vcpus=1, memory_mib={memory}, max_memory_mib=1024, networks=[lan], volumes=[disk])
"""


def expected(count: int) -> tuple[list[str], list[str], list[str]]:
    vms = sorted(f"vm-{i}" for i in range(count))
    disks = sorted(f"disk-{i}" for i in range(count))
    addresses = sorted(["network.lan", *(f"vm.{v}" for v in vms), *(f"volume.{d}" for d in disks)])
    return vms, disks, addresses


def assert_converged(project: ProjectDir, count: int) -> None:
    vms, disks, addresses = expected(count)
    conn = project.sandbox()
    try:
        assert sorted(d.name() for d in conn.listAllDomains(0)) == vms
        assert sorted(v.name() for v in conn.storagePoolLookupByName("default").listAllVolumes(0)) == disks
        assert [n.name() for n in conn.listAllNetworks(0)] == ["lan"]
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


# after-commit is slowed so that there are several batches (61 steps, 10 at a time, at least 0.2 s each: 1.4 s or
# more, past the first commit at 0.5 s): on a fast machine the first batch would otherwise be the whole apply
@pytest.mark.parametrize("failpoint", ["after-intents", "after-mutation:1", "after-mutation:25", "after-checkpoint",
                                       "slow:0.2,after-commit"])
def test_killed_create_converges(project: ProjectDir, failpoint: str) -> None:
    project.write_stack(STACK.format(count=30, memory=256))
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint})
    assert killed.code == -signal.SIGKILL
    intents, recorded = in_flight(project)
    assert intents > 0 and recorded < 61, (intents, recorded)  # killed mid-apply: some intents are not done
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    assert_converged(project, 30)


def test_objects_created_but_not_recorded_are_adopted_or_deleted(project: ProjectDir) -> None:
    project.write_stack(STACK.format(count=20, memory=256))
    assert project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-checkpoint"}).code < 0
    assert project.crane("state", "list").out == ""
    assert len(project.domains()) == 20  # on the hypervisor, unknown to state
    project.write_stack(STACK.format(count=12, memory=256))
    plan = project.crane("plan")
    assert "- vm.vm-15  (orphan: created by crane but never recorded)" in plan.out
    assert "= vm.vm-3  (adopted: created by crane but not recorded)" in plan.out
    assert "+ vm." not in plan.out  # nothing is created twice
    assert project.crane("apply", "--auto-approve").code == 0
    assert_converged(project, 12)


@pytest.mark.parametrize("failpoint", ["after-mutation:3", "after-checkpoint"])
def test_killed_update_and_destroy_converge(project: ProjectDir, failpoint: str) -> None:
    project.write_stack(STACK.format(count=10, memory=256))
    assert project.crane("apply", "--auto-approve").code == 0
    project.write_stack(STACK.format(count=10, memory=512))
    assert project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": failpoint}).code == -signal.SIGKILL
    assert in_flight(project)[0] > 0
    assert project.crane("apply", "--auto-approve").code == 0
    assert_converged(project, 10)
    conn = project.sandbox()
    assert {d.info()[2] for d in conn.listAllDomains(0)} == {512 * 1024}
    conn.close()
    assert project.crane("destroy", "--auto-approve", env={"CRANE_FAILPOINT": failpoint}).code == -signal.SIGKILL
    assert in_flight(project)[0] > 0
    assert project.crane("destroy", "--auto-approve").code == 0
    assert project.domains() == [] and project.crane("state", "list").out == ""


@pytest.mark.parametrize("failpoint", ["after-intents", "after-mutation:40", "after-checkpoint",
                                       "slow:0.02,after-commit:1"])
def test_sigkill_from_outside_mid_apply(project: ProjectDir, failpoint: str) -> None:
    """Another process SIGKILLs the apply once it has reached the failpoint (it pauses there and says so in a file;
    its other threads go on), so the kill lands mid-apply however fast or slow this machine is."""
    project.write_stack(STACK.format(count=150, memory=256))
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
    intents, recorded = in_flight(project)
    assert intents > 0 and recorded < 301, (intents, recorded)  # 150 VMs, 150 volumes and a network
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    assert_converged(project, 150)
    assert in_flight(project) == (0, 301)


def test_module_runs_as_crane() -> None:
    assert subprocess.run([*CRANE, "--version"], capture_output=True, text=True).stdout.startswith("crane ")


CBD_STACK = """
from crane_iac import VM, Network

lan = Network("lan", mode="nat", ipv4="10.78.0.0/24")
other = Network("other", mode="nat", ipv4="10.79.0.0/24")
VM("web", vcpus=1, memory_mib=256, networks=[{net}], create_before_destroy=True)
"""


def test_killed_create_before_destroy_leaves_one_guest(project: ProjectDir) -> None:
    project.write_stack(CBD_STACK.format(net="lan"))
    assert project.crane("apply", "--auto-approve").code == 0
    project.write_stack(CBD_STACK.format(net="other"))  # new NICs: a replacement, made first
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-mutation:2"})
    assert killed.code == -signal.SIGKILL
    resumed = project.crane("apply", "--auto-approve")
    assert resumed.code == 0, resumed.err
    assert project.domains() == ["web-r2"]
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_a_deposed_half_of_a_replacement_is_deleted(project: ProjectDir) -> None:
    """A crash between a create_before_destroy's create and its delete leaves a second object that names the same
    address as its owner: the next plan deletes it (deposed), whichever half state holds."""
    from crane_iac.objects import Owner
    from crane_iac.providers.base import CreateRequest
    from crane_iac.providers.libvirt import LibvirtProvider

    project.write_stack(CBD_STACK.format(net="lan"))
    assert project.crane("apply", "--auto-approve").code == 0
    recorded = json.loads(project.crane("state", "show", "vm.web").out)["properties"]
    provider = LibvirtProvider(None, sandbox_dir=project.root / ".crane", mutating=True)
    provider.create(CreateRequest("vm", "web-r2", {**recorded, "nics": []}, Owner("main", "vm.web")))
    provider.checkpoint()
    provider.close()
    plan = project.crane("plan")
    assert "- vm.web#deposed:web-r2  (orphan: created by crane but never recorded)" in plan.out, plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert project.domains() == ["web"]
    assert project.crane("plan", "--detailed-exitcode").code == 0
