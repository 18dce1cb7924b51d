"""Apply with failures: independent branches go on, dependents are skipped with the reason."""

from __future__ import annotations

from tests.conftest import ProjectDir

STACK = """
from crane_iac import VM, Volume
bad = Volume("bad-disk", capacity_gib=1)
good = Volume("good-disk", capacity_gib=1)
VM("needs-bad", vcpus=1, memory_mib=128, volumes=[bad])
VM("needs-good", vcpus=1, memory_mib=128, volumes=[good])
for i in range(20):
    VM(f"free-{i}", vcpus=1, memory_mib=128)
"""


def test_failure_skips_dependents_and_the_rest_goes_on(project: ProjectDir) -> None:
    project.write_stack(STACK)
    # a refusal the plan could not foresee (a missing pool is caught at plan time: see test_missing_pool_...)
    result = project.crane("apply", "--auto-approve", "--parallelism", "3",
                           env={"CRANE_FAILPOINT": "refuse:volume.bad-disk"})
    assert result.code == 1
    assert "volume.bad-disk: failed" in result.out and "refused by CRANE_FAILPOINT" in result.err
    assert "vm.needs-bad: skipped (0.00s): volume.bad-disk failed" in result.out
    assert "Apply FAILED: 22 created, 1 failed, 1 skipped" in result.out
    assert "needs-bad" not in project.domains() and "needs-good" in project.domains()
    assert len(project.domains()) == 21
    state = project.crane("state", "list").out.split()
    assert "vm.needs-good" in state and "vm.needs-bad" not in state
    # fix the stack: the next apply does only what is left
    fixed = project.crane("apply", "--auto-approve")
    assert fixed.code == 0 and "Apply complete: 2 created" in fixed.out


def test_missing_pool_and_kernel_are_caught_at_plan_time(project: ProjectDir) -> None:
    """The test driver would take a VM whose kernel file is missing; QEMU could not boot it: crane says so first."""
    kernel = project.root / "vmlinuz"
    kernel.write_bytes(b"not really a kernel, but a file")
    project.write_stack(f"""
        from crane_iac import VM, Volume
        disk = Volume("disk", capacity_gib=1, pool="missing-pool")
        VM("ok", vcpus=1, memory_mib=128, kernel="{kernel}")
        VM("bad", vcpus=1, memory_mib=128, kernel="{kernel}", initrd="/nonexistent/initrd.img")
    """)
    result = project.crane("apply", "--auto-approve")
    assert result.code == 1 and "Traceback" not in result.err
    assert "main.py:3: volume.disk: storage pool 'missing-pool' does not exist" in result.err
    assert "use one of: default" in result.err
    assert "main.py:5: vm.bad: initrd '/nonexistent/initrd.img' is not a file on this host" in result.err
    assert "vm.ok" not in result.err
    assert not (project.root / ".crane" / "sandbox.xml").exists()  # nothing was created, not even the sandbox
