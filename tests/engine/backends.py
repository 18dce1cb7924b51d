"""The hypervisors the workflow and crash tests run on, behind one small adapter: the libvirt sandbox (the test
driver, in .crane/sandbox.xml) and a simulated XenServer pool (tests/xensim, reached through the official SDK as a
user's pool master would be). A test takes the ``backend`` fixture (imported into its module:
``from tests.engine.backends import backend_fixture``) and observes the hypervisor through it: the VMs there, their
memory, the stack's networks; it changes things behind crane's back through it too (a VM deleted, one resized), and
makes an object as crane would have, for the tests of interrupted replacements. The stacks differ only where the
pool cannot follow libvirt: no volumes (a VM on XenServer has its template's disks) and internal networks
(``mode="isolated"``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from crane_iac.objects import Owner
from crane_iac.providers.base import CreateRequest, Provider
from tests.conftest import ProjectDir
from tests.waiting import wait_until

PASSWORD_VAR = "CRANE_TEST_XEN_PASSWORD"
XEN_CONFIG = '''[stacks.main]
file = "stacks/main.py"
provider = "xenapi"
uri = "{url}"
username = "{username}"
password_env = "{var}"
address_timeout = 60
'''


class Backend(Protocol):
    #: "sandbox" or "xenapi", the fixture's parameter
    name: str
    #: whether the stack may declare volumes (the pool's VMs have their template's disks only)
    volumes: bool
    #: the network mode both hypervisors have ("nat" on libvirt, an internal network on the pool)
    network_mode: str

    def vms(self) -> list[str]:
        """The names of the guests on the hypervisor, sorted."""

    def networks(self) -> list[str]:
        """The names of the stack's networks on the hypervisor, sorted."""

    def memory_mib(self, name: str) -> int:
        """The memory the guest ``name`` has now."""

    def guest(self, name: str) -> tuple[str, int, bool]:
        """The guest ``name``'s UUID, vCPUs and whether it runs."""

    def half_made(self) -> list[str]:
        """Guests an interrupted create left half-made, which crane reads as its own (a pool's clone that has its
        owner and name, not yet provisioned, or is still named for the address it is made for): sorted names."""

    def leftovers(self) -> list[str]:
        """Half-made objects an interrupted create left (a pool's clone not yet owned): [] once an apply converged."""

    def delete_vm(self, name: str) -> None:
        """Destroy a guest behind crane's back."""

    def set_memory(self, name: str, mib: int) -> None:
        """Resize a guest behind crane's back."""

    def provider(self) -> Provider:
        """A mutating provider of the project's endpoint, as crane opens it (the caller closes it)."""


class Sandbox:
    name, volumes, network_mode = "sandbox", True, "nat"

    def __init__(self, project: ProjectDir) -> None:
        self.project = project

    def vms(self) -> list[str]:
        return self.project.domains()

    def networks(self) -> list[str]:
        return self.project.networks()

    def memory_mib(self, name: str) -> int:
        conn = self.project.sandbox()
        try:
            return int(conn.lookupByName(name).info()[2]) // 1024
        finally:
            conn.close()

    def guest(self, name: str) -> tuple[str, int, bool]:
        conn = self.project.sandbox()
        try:
            dom = conn.lookupByName(name)
            return dom.UUIDString(), dom.vcpusFlags(0), bool(dom.isActive())
        finally:
            conn.close()

    def half_made(self) -> list[str]:
        return []

    def leftovers(self) -> list[str]:
        return []

    def provider(self) -> Provider:
        from crane_iac.providers.libvirt import LibvirtProvider

        return LibvirtProvider(None, sandbox_dir=self.project.root / ".crane", mutating=True)

    def _edit(self, name: str, edit: Any) -> None:
        """A second libvirt client edits the sandbox and saves it, as crane's own mutations do."""
        provider: Any = self.provider()
        try:
            edit(provider.conn.lookupByName(name))
            provider.host.changing("vm", name)
        finally:
            provider.close()

    def delete_vm(self, name: str) -> None:
        def destroy(dom: Any) -> None:
            dom.destroy()
            dom.undefine()
        self._edit(name, destroy)

    def set_memory(self, name: str, mib: int) -> None:
        def resize(dom: Any) -> None:
            dom.setMemoryFlags(mib * 1024, 2)  # config
            dom.setMemoryFlags(mib * 1024, 1)  # live
        self._edit(name, resize)


class XenPool:
    name, volumes, network_mode = "xenapi", False, "isolated"

    def __init__(self, project: ProjectDir, sim: Any) -> None:
        self.project, self.sim = project, sim

    def _settled(self) -> None:
        """The pool once the tasks an apply left running have ended: a killed apply's clones go on without it, as on
        a real pool, so what the pool holds is read after them, not in the middle."""
        wait_until(lambda: all(task["status"] != "pending" for task in self.sim.backdoor.records("task").values()),
                   60, "the pool's tasks to end")

    def _guests(self) -> dict[str, dict[str, Any]]:
        self._settled()
        return {vm["name_label"]: vm for vm in self.sim.backdoor.vms()}

    def vms(self) -> list[str]:
        return sorted(self._guests())

    def networks(self) -> list[str]:
        return sorted(rec["name_label"] for rec in self.sim.backdoor.records("network").values()
                      if "crane/stack" in rec["other_config"])

    def memory_mib(self, name: str) -> int:
        return int(self._guests()[name]["memory_dynamic_max"]) // (1024 * 1024)

    def guest(self, name: str) -> tuple[str, int, bool]:
        rec = self._guests()[name]
        return rec["uuid"], int(rec["VCPUs_at_startup"]), rec["power_state"] == "Running"

    def half_made(self) -> list[str]:
        # a clone still named crane-making:<stack>/<address> (the kill came before its rename) is read as its
        # address's too, unfinished (providers/xenapi/reading.py): by the name the address gives the guest
        self._settled()
        found = []
        for rec in self.sim.backdoor.records("VM").values():
            label = rec["name_label"]
            if label.startswith("crane-making:"):
                found.append(label.rpartition("/")[2].partition(".")[2])
            elif rec["is_a_template"] and "crane/stack" in rec["other_config"]:
                found.append(label)
        return sorted(found)

    def leftovers(self) -> list[str]:
        """Templates crane made (a clone named ``crane-making:…``, or one with crane's owner keys, not yet a guest),
        and guests not running."""
        self._settled()
        found = []
        for rec in self.sim.backdoor.records("VM").values():
            if rec["is_control_domain"]:
                continue
            if rec["is_a_template"] and (rec["name_label"].startswith("crane-making:")
                                         or "crane/stack" in rec["other_config"]):
                found.append(f"template {rec['name_label']}")
            elif not rec["is_a_template"] and rec["power_state"] != "Running":
                found.append(f"{rec['power_state'].lower()} {rec['name_label']}")
        return sorted(found)

    def delete_vm(self, name: str) -> None:
        self.sim.backdoor.destroy_vm(name)

    def set_memory(self, name: str, mib: int) -> None:
        self.sim.backdoor.set_memory(name, mib)

    def provider(self) -> Provider:
        from crane_iac.providers.xenapi.provider import XenApiProvider
        from crane_iac.providers.xenapi.settings import XenApiSettings

        return XenApiProvider(self.sim.url, self.sim.password, XenApiSettings(
            username=self.sim.username, password_env=PASSWORD_VAR, address_timeout=60.0))


def xen_config(sim: Any) -> str:
    return XEN_CONFIG.format(url=sim.url, username=sim.username, var=PASSWORD_VAR)


@pytest.fixture(name="backend", params=["sandbox", "xenapi"])
def backend_fixture(request: pytest.FixtureRequest, project: ProjectDir,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The project's default endpoint on each hypervisor in turn: the sandbox, then a simulated pool (its password
    in the environment, where crane run in this process and its child processes find it)."""
    if request.param == "sandbox":
        yield Sandbox(project)
        return
    from tests.xensim import PoolSpec, Simulator
    from tests.xensim.config import SRSpec

    # storage for 150 VMs of the template's 10 GiB disk (the crash tests' biggest stack)
    with Simulator(PoolSpec(srs=[SRSpec("Local storage", size_gib=4096)]), tls=False) as sim:
        monkeypatch.setenv(PASSWORD_VAR, sim.password)
        project.write_config(xen_config(sim))
        yield XenPool(project, sim)


def make_behind(backend: Backend, kind: str, physical: str, properties: dict[str, Any], owner: Owner) -> None:
    """Make an object as crane would have (its owner written in it), behind crane's back: what a crash between a
    create and its record leaves."""
    provider = backend.provider()
    try:
        provider.create(CreateRequest(kind, physical, properties, owner))
        provider.checkpoint()
    finally:
        provider.close()
