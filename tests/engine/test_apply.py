"""Apply with failures: independent branches go on, dependents are skipped with the reason."""

from __future__ import annotations

from tests.conftest import ProjectDir

STACK = """
from crane_iac import VM, Volume
bad = Volume("bad-disk", capacity_gib=1, pool="missing-pool")
good = Volume("good-disk", capacity_gib=1)
VM("needs-bad", vcpus=1, memory_mib=128, volumes=[bad])
VM("needs-good", vcpus=1, memory_mib=128, volumes=[good])
for i in range(20):
    VM(f"free-{i}", vcpus=1, memory_mib=128)
"""


def test_failure_skips_dependents_and_the_rest_goes_on(project: ProjectDir) -> None:
    project.write_stack(STACK)
    result = project.crane("apply", "--auto-approve", "--parallelism", "3")
    assert result.code == 1
    assert "volume.bad-disk: failed" in result.out and "missing-pool" in result.err
    assert "vm.needs-bad: skipped (0.00s): volume.bad-disk failed" in result.out
    assert "Apply FAILED: 22 done, 1 failed, 1 skipped" in result.out
    assert "needs-bad" not in project.domains() and "needs-good" in project.domains()
    assert len(project.domains()) == 21
    state = project.crane("state", "list").out.split()
    assert "vm.needs-good" in state and "vm.needs-bad" not in state
    # fix the stack: the next apply does only what is left
    project.write_stack(STACK.replace('pool="missing-pool"', 'pool="default"'))
    fixed = project.crane("apply", "--auto-approve")
    assert fixed.code == 0 and "Apply complete: 2 done" in fixed.out
