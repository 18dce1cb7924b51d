"""Two endpoints in one stack, for real: the embedded sandbox and qemu:///system. The plan groups the changes by
endpoint, reads run on both, apply creates each resource where it belongs, a diskless guest is replaced
create-before-destroy on the real host (the new one boots and answers before the old one goes), and destroy
empties both."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectDir, ok
from tests.real.host import REAL_ENDPOINT, RealHost, http_get

PREFIX = "cre-"

STACK = """
from crane_iac import VM, Network, export

# on the real host (the endpoint named "host" in crane.toml)
wan = Network("cre-lan", mode="nat", ipv4="10.232.0.0/24", provider="host")
guest = VM("cre-web", vcpus=1, memory_mib=128, networks=[wan], kernel="{kernel}", initrd="{initrd}",
           cmdline="{cmdline}", create_before_destroy=True, provider="host")
# on the sandbox (the default endpoint)
lan = Network("cre-net", mode="nat", ipv4="10.233.0.0/24")
VM("cre-app", vcpus=1, memory_mib=256, networks=[lan], description=guest.uuid)
export("web-ipv4", guest.ipv4)
"""


@pytest.fixture
def two(real_host: RealHost, tmp_path: Path) -> Iterator[ProjectDir]:
    real_host.sweep(PREFIX)
    project = ProjectDir(tmp_path)
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.host]\n' + REAL_ENDPOINT)
    yield project
    project.crane("destroy", "--auto-approve")
    real_host.sweep(PREFIX)


def write(project: ProjectDir, host: RealHost, cmdline: str) -> None:
    project.write_stack(textwrap.dedent(STACK).format(kernel=host.kernel, initrd=host.initrd, cmdline=cmdline))


def test_a_stack_on_the_sandbox_and_a_real_host(two: ProjectDir, real_host: RealHost) -> None:
    write(two, real_host, "console=ttyS0")
    plan = ok(two, "plan")
    assert " on endpoint default (2 changes):" in plan and " on endpoint host (2 changes):" in plan, plan
    ok(two, "apply", "--auto-approve")
    assert real_host.names(PREFIX) == {"domains": ["cre-web"], "networks": ["cre-lan"], "pools": [], "volumes": []}
    assert two.domains() == ["cre-app"]  # the sandbox has its own network and the app guest
    address = ok(two, "output", "web-ipv4").strip()
    assert address.startswith("10.232.0.") and http_get(address, timeout=60).strip() == "crane test guest"
    assert two.crane("plan", "--detailed-exitcode").code == 0

    # a new kernel command line cannot reach a running guest live; with create_before_destroy the replacement
    # boots under a generation name first, then the old guest goes
    write(two, real_host, "console=ttyS0 quiet")
    planned = ok(two, "plan", "--replace", "vm.cre-web")
    assert "+/- vm.cre-web  name: cre-web → cre-web-r2  # forces replacement" in planned, planned
    ok(two, "apply", "--auto-approve", "--replace", "vm.cre-web")
    assert real_host.names(PREFIX)["domains"] == ["cre-web-r2"]
    new_address = ok(two, "output", "web-ipv4").strip()
    assert http_get(new_address, timeout=60).strip() == "crane test guest"
    assert two.crane("plan", "--detailed-exitcode").code == 0

    ok(two, "destroy", "--auto-approve")
    assert real_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert two.domains() == []
