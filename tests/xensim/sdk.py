"""Test helpers: a logged-in SDK session on a simulator, and the calls a client makes over and over."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import XenAPI

from tests.waiting import wait_until
from tests.xensim import Simulator


@contextlib.contextmanager
def login(sim: Simulator, originator: str = "xensim-tests") -> Iterator[Any]:
    """A logged-in SDK session's ``xenapi`` (logged out and its connection closed at the end)."""
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(sim.username, sim.password, "2.21", originator)
    try:
        yield session.xenapi
    finally:
        with contextlib.suppress(Exception):
            session.xenapi.session.logout()
        close(session)


def close(session: Any) -> None:
    """Close an SDK session's kept-alive connection (the SDK leaves that to the garbage collector)."""
    session("close")()


def failure(call: Any, *args: Any) -> list[str]:
    """The ErrorDescription of a call that must fail."""
    try:
        call(*args)
    except XenAPI.Failure as e:
        return list(e.details)
    raise AssertionError(f"{call} {args} succeeded")


def finish(x: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll a task until it is no longer pending; its record."""
    wait_until(lambda: x.task.get_status(task) not in ("pending", "cancelling"), timeout, f"task {task} finished")
    return x.task.get_record(task)  # type: ignore[no-any-return]


def vif_record(vm: str, network: str, device: str = "0", mac: str = "") -> dict[str, Any]:
    return {"device": device, "network": network, "VM": vm, "MAC": mac, "MTU": "1500", "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}


def new_vm(x: Any, name: str, template: str = "Debian Bookworm 12", network: bool = True) -> str:
    """A VM as a user makes one: clone the template, provision its disks, no longer a template, one VIF."""
    vm = x.VM.clone(x.VM.get_by_name_label(template)[0], name)
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    if network:
        net = x.network.get_all()[0]
        x.VIF.create(vif_record(vm, net))
    return vm  # type: ignore[no-any-return]
