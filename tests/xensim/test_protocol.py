"""The wire protocol and sessions, through the unmodified SDK."""

from __future__ import annotations

import xmlrpc.client

import pytest
import XenAPI

from tests.xensim import Simulator
from tests.xensim.sdk import close, failure, login


def test_refs_are_opaque_and_distinct_from_uuids_and_get_by_works(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        records = x.VM.get_all_records()
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        assert template.startswith("OpaqueRef:") and template != "OpaqueRef:" + records[template]["uuid"]
        assert x.VM.get_by_uuid(records[template]["uuid"]) == template
        assert sorted(x.VM.get_all()) == sorted(records)
        assert records[template]["memory_static_max"] == "1073741824"  # ints on the wire are strings


def test_unknown_method_wrong_count_bad_ref_and_removed_message(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        assert failure(x.VM.frobnicate) == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
        assert failure(x.VM.clone, "OpaqueRef:x") == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.clone", "3", "2"]
        assert failure(x.VM.get_record, "OpaqueRef:gone") == ["HANDLE_INVALID", "VM", "OpaqueRef:gone"]
        host = x.host.get_all()[0]
        assert failure(x.VM.get_record, host) == ["HANDLE_INVALID", "VM", host]  # a ref of another class
        assert failure(x.host.set_cpu_features, host, "0")[0] == "MESSAGE_REMOVED"
        assert failure(x.VM.set_VCPUs_max, x.VM.get_all()[0], "two")[0] == "FIELD_TYPE_ERROR"


def test_a_bad_password_fails_authentication(xen_simulator: Simulator) -> None:
    session = XenAPI.Session(xen_simulator.url)
    with pytest.raises(XenAPI.Failure) as info:
        session.xenapi.login_with_password(xen_simulator.username, "wrong", "2.21", "t")
    close(session)
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"


def test_a_logged_out_or_expired_session_is_invalid_on_the_wire(xen_simulator: Simulator) -> None:
    proxy = xmlrpc.client.ServerProxy(xen_simulator.url)
    ref = proxy.session.login_with_password(xen_simulator.username, xen_simulator.password, "2.21", "raw")["Value"]
    assert proxy.VM.get_all(ref)["Status"] == "Success"
    xen_simulator.faults.expire_sessions()
    assert proxy.VM.get_all(ref) == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", ref]}
    ref = proxy.session.login_with_password(xen_simulator.username, xen_simulator.password)["Value"]  # legacy form
    assert proxy.session.logout(ref) == {"Status": "Success", "Value": ""}
    assert proxy.VM.get_all(ref)["ErrorDescription"][0] == "SESSION_INVALID"
    proxy("close")()


def test_the_sdk_logs_in_again_after_an_expiry_and_sessions_carry_the_originator(xen_simulator: Simulator) -> None:
    with login(xen_simulator, originator="crane") as x:
        assert [s["originator"] for s in xen_simulator.backdoor.sessions()] == ["crane"]
        xen_simulator.faults.expire_sessions()
        assert x.VM.get_all()  # the SDK saw SESSION_INVALID and logged in again
        assert xen_simulator.calls["session.login_with_password"] == 2


def test_round_trips_are_counted_per_method(xen_simulator: Simulator) -> None:
    before = xen_simulator.round_trips
    with login(xen_simulator) as x:
        x.VM.get_all_records()
        x.VM.get_all_records()
    assert xen_simulator.round_trips - before == 4  # login, two reads, logout
    assert xen_simulator.calls["VM.get_all_records"] == 2
