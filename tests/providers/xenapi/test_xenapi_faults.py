"""Reliability on a (simulated) pool: a connection dropped mid-apply (after the pool did the call, so crane cannot
tell) and a session expired mid-apply; the next apply converges, with no duplicate and no leftover. And secrets:
the password and the session's reference are nowhere in state, plans (text, JSON, Markdown), logs or history."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pytest

from tests.conftest import ProjectDir, Result, ok
from tests.providers.xenapi.conftest import PASSWORD_VAR, guests
from tests.waiting import wait_until


def _templates(sim: Any) -> list[str]:
    return sorted(rec["name_label"] for rec in sim.backdoor.records("VM").values() if rec["is_a_template"])


def test_a_connection_dropped_after_a_start_then_the_next_apply_converges(xen: ProjectDir, sim: Any) -> None:
    sim.faults.drop_next("VM.start", after=True)
    failed = xen.crane("apply", "--auto-approve", "--var", "web=1")
    assert failed.code == 1 and "Traceback" not in failed.err, failed
    assert "dropped during Async.VM.start" in failed.err, failed.err
    ok(xen, "apply", "--auto-approve", "--var", "web=1")
    assert sorted(guests(sim)) == ["web-1"] and guests(sim)["web-1"]["power_state"] == "Running"
    assert xen.crane("plan", "--detailed-exitcode", "--var", "web=1").code == 0


def test_an_answer_cut_off_after_its_headers_is_a_dropped_connection(xen: ProjectDir, sim: Any) -> None:
    # a master going down while it answers: an empty body, on which Python's XML-RPC parser fails (ExpatError)
    sim.faults.drop_next("VM.start", after=True, headers_only=True)
    failed = xen.crane("apply", "--auto-approve", "--var", "web=1")
    assert failed.code == 1 and "Traceback" not in failed.err, failed
    assert "dropped during Async.VM.start" in failed.err, failed.err
    ok(xen, "apply", "--auto-approve", "--var", "web=1")
    assert sorted(guests(sim)) == ["web-1"] and guests(sim)["web-1"]["power_state"] == "Running"


def test_a_connection_dropped_after_a_clone_leaves_nothing_behind(xen: ProjectDir, sim: Any) -> None:
    templates = _templates(sim)
    sim.faults.drop_next("VM.clone", after=True)
    failed = xen.crane("apply", "--auto-approve", "--var", "web=1")
    assert failed.code == 1 and "Traceback" not in failed.err, failed
    # the clone the pool made (an async task: it may end after the dropped call that started it)
    wait_until(lambda: any(name.startswith("crane-making:") for name in _templates(sim)), 30,
               "the pool's clone task to finish")
    ok(xen, "apply", "--auto-approve", "--var", "web=1")
    assert sorted(guests(sim)) == ["web-1"]
    assert _templates(sim) == templates  # the half-made clone removed, the template itself untouched
    assert xen.crane("plan", "--detailed-exitcode", "--var", "web=1").code == 0


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Result]]:
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(fn()))
    thread.start()
    return thread, results


def test_a_session_expired_mid_apply_is_renewed(xen: ProjectDir, sim: Any) -> None:
    stall = sim.faults.stall_tasks("VM.clone")
    thread, results = _in_thread(lambda: xen.crane("apply", "--auto-approve", "--var", "web=1",
                                                   env={PASSWORD_VAR: sim.password}))
    try:
        wait_until(lambda: stall.waiting >= 1, 60, "the apply's clone to start")
        sim.faults.expire_sessions()
    finally:
        stall.release()
        thread.join(120)
    assert results and results[0].code == 0, results
    assert sorted(guests(sim)) == ["web-1"]
    assert xen.crane("plan", "--detailed-exitcode", "--var", "web=1").code == 0
    assert sim.backdoor.sessions() == []  # logged out at the end


def test_the_password_and_the_session_are_in_no_state_plan_log_or_history(
        xen: ProjectDir, sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stall = sim.faults.stall_tasks("VM.clone")
    sessions: list[str] = []

    def grab_the_session() -> None:  # while the apply (in this process, on the main thread) waits for its clone
        try:
            wait_until(lambda: stall.waiting >= 1, 60, "the apply's clone to start")
            sessions.extend(sim.backdoor.records("session"))
        finally:
            stall.release()

    grabber = threading.Thread(target=grab_the_session)
    grabber.start()
    applied = xen.crane("apply", "--auto-approve")
    grabber.join(120)
    assert applied.code == 0, applied
    assert sessions and len(sim.password) >= 6
    assert "web-1: VM.clone done" in caplog.text  # the provider's log lines were captured
    secrets = [sim.password, *sessions]
    sim.backdoor.set_memory("web-1", 512)  # a plan with changes to show
    texts = {
        "plan text": ok(xen, "plan"),
        "plan JSON": ok(xen, "plan", "--format", "json"),
        "plan Markdown": ok(xen, "plan", "--format", "markdown"),
        "apply": applied.out + applied.err,
        "history": ok(xen, "state", "history"),
        "state list": ok(xen, "state", "list"),
        "logs": caplog.text,
    }
    for root, _dirs, files in os.walk(xen.root / ".crane"):
        for name in files:
            texts[name] = (xen.root / ".crane" / root / name).read_bytes().decode("latin-1")
    assert "state.db" in texts
    for what, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{what} holds a secret"
        assert "OpaqueRef:" not in text, f"{what} holds a XenAPI reference"
