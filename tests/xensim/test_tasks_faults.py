"""Tasks and fault injection: async calls followed to completion, failed, stalled and cancelled tasks, dropped
connections, a restarted master, and the HTTPS endpoint with its certificate."""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import xmlrpc.client

import pytest
import XenAPI

from tests.waiting import wait_until
from tests.xensim import PoolSpec, Simulator
from tests.xensim.sdk import close, failure, finish, login, new_vm


def test_an_async_clone_goes_pending_then_success_with_an_xml_result(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        task = x.Async.VM.clone(template, "a1")
        assert task.startswith("OpaqueRef:") and x.task.get_name_label(task) == "Async.VM.clone"
        record = finish(x, task)
        assert record["status"] == "success" and record["progress"] == 1.0
        clone = re.fullmatch(r"<value>(OpaqueRef:[0-9a-f-]+)</value>", record["result"])
        assert clone and x.VM.get_name_label(clone.group(1)) == "a1"
        x.task.destroy(task)
        assert failure(x.task.get_record, task)[0] == "HANDLE_INVALID"


def test_a_failing_async_call_ends_the_task_in_failure(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "f")
        record = finish(x, x.Async.VM.clean_shutdown(vm))
        assert record["status"] == "failure" and record["error_info"] == ["VM_BAD_POWER_STATE", vm, "running",
                                                                          "halted"]
        xen_simulator.faults.fail_tasks("VM.start", ["SR_FULL", "1", "0"])
        assert finish(x, x.Async.VM.start(vm, False, False))["error_info"] == ["SR_FULL", "1", "0"]
        assert x.VM.get_power_state(vm) == "Halted"


def test_a_stalled_task_shows_progress_until_released_or_cancelled(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        with xen_simulator.faults.stall_tasks("VM.clone") as stall:
            held, cancelled = x.Async.VM.clone(template, "held"), x.Async.VM.clone(template, "cancelled")
            wait_until(lambda: stall.waiting == 2, 5, "both clones stalled")
            assert x.task.get_status(held) == "pending" and x.task.get_progress(held) == 0.5
            x.task.cancel(cancelled)
            assert finish(x, cancelled)["error_info"] == ["TASK_CANCELLED", cancelled]
            assert x.task.get_status(held) == "pending"
        assert finish(x, held)["status"] == "success"
        assert x.VM.get_by_name_label("cancelled") == [] and len(x.VM.get_by_name_label("held")) == 1
        assert failure(x.task.cancel, held)[0] == "OPERATION_NOT_ALLOWED"


def test_async_tasks_run_in_parallel_up_to_the_worker_count() -> None:
    with Simulator(PoolSpec(task_workers=3)) as sim, login(sim) as x:
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        with sim.faults.stall_tasks("VM.clone") as stall:
            tasks = [x.Async.VM.clone(template, f"p{i}") for i in range(5)]
            wait_until(lambda: stall.waiting == 3, 5, "three clones running at once")
            assert stall.waiting == 3
        for task in tasks:
            assert finish(x, task)["status"] == "success"


def test_a_dropped_connection_before_or_after_the_call(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "d")
        xen_simulator.faults.drop_next("VM.start", times=2)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            x.VM.start(vm, False, False)
        assert x.VM.get_power_state(vm) == "Halted"  # dropped before doing anything
        assert xen_simulator.calls["VM.start"] == 2  # the stdlib sent it again once on its own
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        xen_simulator.faults.drop_next("VM.clone", after=True)
        x.VM.clone(template, "twice")  # done, dropped, sent again by the stdlib, done again
        assert len(x.VM.get_by_name_label("twice")) == 2


def test_a_restarted_master_keeps_the_pool_and_loses_the_sessions(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "r")
        port = xen_simulator.port
        xen_simulator.stop_master()
        with pytest.raises(ConnectionError):
            x.VM.get_record(vm)
        xen_simulator.start_master()
        assert xen_simulator.port == port and xen_simulator.backdoor.sessions() == []
        assert x.VM.get_name_label(vm) == "r"  # the SDK logged in again after SESSION_INVALID
        assert xen_simulator.calls["session.login_with_password"] == 2


def test_https_with_a_self_signed_certificate_that_can_be_pinned() -> None:
    with Simulator(PoolSpec(), tls=True) as sim:
        assert sim.url.startswith("https://") and sim.cert_pem and sim.cert_sha256
        der = ssl.PEM_cert_to_DER_cert(sim.cert_pem)
        assert hashlib.sha256(der).hexdigest() == sim.cert_sha256
        session = XenAPI.Session(sim.url)
        with pytest.raises(ssl.SSLCertVerificationError):
            session.xenapi.login_with_password(sim.username, sim.password, "2.21", "t")
        close(session)
        context = ssl.create_default_context(cadata=sim.cert_pem)
        pinned = XenAPI.Session(sim.url, transport=xmlrpc.client.SafeTransport(context=context))
        pinned.xenapi.login_with_password(sim.username, sim.password, "2.21", "t")
        assert pinned.xenapi.VM.get_all()
        pinned.xenapi.session.logout()
        close(pinned)
