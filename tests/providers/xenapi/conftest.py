"""A project whose default endpoint is a simulated XenServer pool (tests/xensim), reached through the official SDK
as a user's pool would be; its password in an environment variable, as crane.toml asks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ProjectDir
from tests.engine.backends import PASSWORD_VAR, XEN_CONFIG

STACK = '''from crane_iac import VM, Network, variable
lan = Network("lan", mode="isolated", ipv4="10.9.0.0/24")
for i in range(1, variable("web") + 1):
    VM(f"web-{i}", vcpus=1, memory_mib=variable("memory"), max_memory_mib=1024, networks=[lan],
       description="crane test")
'''
#: the project's crane.toml: the pool as the stack's endpoint (``extra``: more of its keys), and the stack's variables
CONFIG = XEN_CONFIG + '''{extra}
[stacks.main.vars]
web = {{ type = "int", default = 2 }}
memory = {{ type = "int", default = 256 }}
'''


@pytest.fixture
def sim() -> Iterator[Any]:
    from tests.xensim import PoolSpec, Simulator

    with Simulator(PoolSpec(), tls=False) as simulator:
        yield simulator


def write_project(project: ProjectDir, sim: Any, *, stack: str = STACK, extra: str = "") -> None:
    project.write_stack(stack)
    project.write_config(CONFIG.format(url=sim.url, username=sim.username, var=PASSWORD_VAR, extra=extra))


@pytest.fixture
def xen(project: ProjectDir, sim: Any, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, sim.password)
    write_project(project, sim)
    return project


def guests(sim: Any) -> dict[str, dict[str, Any]]:
    """The pool's VMs by name (templates and the control domain left out)."""
    return {vm["name_label"]: vm for vm in sim.backdoor.vms()}


def crane_networks(sim: Any) -> list[str]:
    return sorted(rec["name_label"] for rec in sim.backdoor.records("network").values()
                  if "crane/stack" in rec["other_config"])
