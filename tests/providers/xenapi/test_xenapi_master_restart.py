"""The pool master restarted mid-apply (its sessions lost, its tasks going on), and the master down for a while
mid-apply: the apply renews its session and goes on, or fails cleanly naming the pool; the next apply converges,
with no duplicate VM and no half-made clone left."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import ProjectDir, Result, ok
from tests.engine.backends import XenPool
from tests.providers.xenapi.conftest import PASSWORD_VAR, guests
from tests.waiting import wait_until


def _apply_in_thread(xen: ProjectDir, sim: Any) -> tuple[threading.Thread, list[Result]]:
    """``crane apply`` of three VMs in a child process (its own sessions), from a thread of this one."""
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(xen.crane(
        "apply", "--auto-approve", "--var", "web=3", env={PASSWORD_VAR: sim.password})))
    thread.start()
    return thread, results


def _converged(xen: ProjectDir, sim: Any) -> None:
    assert sorted(guests(sim)) == ["web-1", "web-2", "web-3"]
    assert XenPool(xen, sim).leftovers() == []
    assert xen.crane("plan", "--detailed-exitcode", "--var", "web=3").code == 0


def test_a_master_restarted_mid_apply_loses_no_vm(xen: ProjectDir, sim: Any) -> None:
    stall = sim.faults.stall_tasks("VM.clone")
    thread, results = _apply_in_thread(xen, sim)
    try:
        wait_until(lambda: stall.waiting >= 1, 60, "the apply's clones to start")
        sessions = sim.backdoor.sessions()
        assert sessions  # the apply's
        sim.restart_master()
        assert sim.backdoor.sessions() == []  # the restart lost them; the clones' tasks go on
    finally:
        stall.release()
        thread.join(120)
    assert results, "the apply did not end"
    applied = results[0]
    # the SDK's session is renewed on SESSION_INVALID: the apply waits for its tasks on the new session and ends
    assert applied.code == 0 and "Traceback" not in applied.err, applied
    _converged(xen, sim)
    ok(xen, "apply", "--auto-approve", "--var", "web=3")
    _converged(xen, sim)


def test_a_master_down_mid_apply_fails_cleanly_and_the_next_apply_converges(xen: ProjectDir, sim: Any) -> None:
    stall = sim.faults.stall_tasks("VM.clone")
    thread, results = _apply_in_thread(xen, sim)
    try:
        wait_until(lambda: stall.waiting >= 1, 60, "the apply's clones to start")
        sim.stop_master()
        thread.join(120)  # the apply cannot reach the master: it gives up
    finally:
        stall.release()  # the clones finish on the pool meanwhile, named crane-making:… and not owned yet
        thread.join(120)
    assert results, "the apply did not end"
    failed = results[0]
    assert failed.code == 1 and "Traceback" not in failed.err, failed
    assert sim.url.rstrip("/") in failed.err, failed.err  # the error names the pool
    wait_until(lambda: sim.backdoor.records("task") == {} or all(
        t["status"] != "pending" for t in sim.backdoor.records("task").values()), 30, "the clones to finish")
    sim.start_master()
    assert [x for x in XenPool(xen, sim).leftovers() if x.startswith("template crane-making:main/vm.web-")]
    ok(xen, "apply", "--auto-approve", "--var", "web=3")
    _converged(xen, sim)
