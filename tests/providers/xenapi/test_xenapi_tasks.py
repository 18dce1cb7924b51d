"""Long calls run as the pool's tasks, several at once up to the endpoint's ``max_tasks``; a failed task is the
pool's error, and a task is destroyed once followed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from crane_iac.providers.xenapi.session import Connection, XenApiError
from crane_iac.providers.xenapi.tasks import Tasks, task_result
from tests.waiting import wait_until


@pytest.fixture
def conn(sim: Any) -> Any:
    connection = Connection(sim.url, sim.username, sim.password)
    yield connection
    connection.close()


def _template(conn: Connection) -> str:
    return str(conn.call("VM.get_by_name_label", "Debian Bookworm 12")[0])


def test_tasks_run_in_parallel_up_to_the_limit(sim: Any, conn: Connection) -> None:
    tasks = Tasks(conn, limit=2, timeout=60)
    template = _template(conn)
    stall = sim.faults.stall_tasks("VM.clone")
    made: list[str] = []
    threads = [threading.Thread(target=lambda i=i: made.append(tasks.run("VM.clone", template, f"c{i}",
                                                                          what=f"c{i}"))) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: stall.waiting >= 2, 30, "two clones running at once")
    finally:
        stall.release()
        for thread in threads:
            thread.join(60)
    assert len(made) == 4 and all(ref.startswith("OpaqueRef:") for ref in made)
    assert tasks.peak == 2  # never a third while two ran
    assert [t for t in sim.backdoor.records("task").values() if t["name_label"].endswith("VM.clone")] == []


def test_a_failed_task_is_the_pool_s_error(sim: Any, conn: Connection) -> None:
    sim.faults.fail_tasks("VM.clone", ["SR_FULL", "OpaqueRef:x", "1", "2"])
    with pytest.raises(XenApiError) as failed:
        Tasks(conn, limit=1, timeout=60).run("VM.clone", _template(conn), "c", what="c")
    assert failed.value.code == "SR_FULL"


def test_a_task_result_is_the_value_inside_its_xml() -> None:
    assert task_result("<value>OpaqueRef:abc</value>") == "OpaqueRef:abc"
    assert task_result("") == ""


def test_a_tasks_progress_goes_to_the_step_that_runs_it(sim: Any, conn: Connection) -> None:
    """While a task runs, the request's progress note hears how far it got (the apply shows it under the step),
    and that it is done; a thread with no step reporting is not told."""
    tasks = Tasks(conn, limit=1, timeout=60)
    template = _template(conn)
    notes: list[str] = []
    stall = sim.faults.stall_tasks("VM.clone")
    result: list[str] = []

    def run() -> None:
        with tasks.reporting(notes.append):
            result.append(tasks.run("VM.clone", template, "c1", what="c1"))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: notes, 30, "the pending clone's progress")
    finally:
        stall.release()
        thread.join(60)
    # the first poll may see the stalled task before or after the simulator moves it to half-way
    assert result and notes[0] in ("VM.clone 0%", "VM.clone 50%") and notes[-1] == "VM.clone done", notes
    tasks.run("VM.clone", template, "c2", what="c2")  # outside ``reporting``: no note
    assert notes[-1] == "VM.clone done" and notes.count("VM.clone done") == 1
