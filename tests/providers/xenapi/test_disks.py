"""Extra disks and templates on a (simulated) XenServer pool, through crane's CLI: a stack's volumes become VDIs
(owned in other_config) attached to their VM by VBDs; plan, apply, a no-op re-plan, a grow in place, a detach, a
VDI destroyed behind crane's back, destroy; a VM from a template of its own, whose change replaces it; and what
XenServer cannot do refused at load, naming the resource."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ProjectDir, ok
from tests.providers.xenapi.conftest import CONFIG, PASSWORD_VAR, guests
from tests.xensim.sdk import login

GIB = 1024 ** 3
DISKS = '''from crane_iac import VM, Network, Volume, variable
lan = Network("lan", mode="isolated")
data = Volume("data", capacity_gib=variable("size"))
disks = [data, Volume("logs", capacity_gib=2, pool="fast-ssd")] if variable("logs") else [data]
VM("db", vcpus=1, memory_mib=256, networks=[lan], volumes=disks)
'''
VARS = '''size = { type = "int", default = 4 }
logs = { type = "bool", default = true }
'''


def write(project: ProjectDir, sim: Any, stack: str, variables: str) -> None:
    """The project of conftest.py with this stack and more variables (its own table is the config's last)."""
    project.write_stack(stack)
    project.write_config(CONFIG.format(url=sim.url, username=sim.username, var=PASSWORD_VAR, extra="") + variables)


def crane_vdis(sim: Any) -> dict[str, dict[str, Any]]:
    """The VDIs crane owns, by name."""
    return {vdi["name_label"]: vdi for vdi in sim.backdoor.records("VDI").values()
            if "crane/stack" in vdi["other_config"]}


def attached(sim: Any, vm_name: str) -> dict[str, dict[str, Any]]:
    """The VBDs crane attached to the VM, by the name of their VDI."""
    vm = guests(sim)[vm_name]
    vbds, vdis = sim.backdoor.records("VBD"), sim.backdoor.records("VDI")
    return {vdis[vbds[r]["VDI"]]["name_label"]: vbds[r] for r in vm["VBDs"]
            if "crane/disk" in vbds[r]["other_config"]}


@pytest.fixture
def sim() -> Iterator[Any]:
    """conftest's pool with a second SR (a volume's pool names an SR by a name crane takes: no spaces)."""
    from tests.xensim import PoolSpec, Simulator

    with Simulator(PoolSpec(srs=["Local storage", "fast-ssd"]), tls=False) as simulator:
        yield simulator


@pytest.fixture
def disks(project: ProjectDir, sim: Any, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, sim.password)
    write(project, sim, DISKS, VARS)
    return project


def test_volumes_are_vdis_attached_by_vbds(disks: ProjectDir, sim: Any) -> None:
    plan = disks.crane("plan")
    assert plan.code == 0 and "Plan: 4 to create" in plan.out, plan
    assert "+ volume.data" in plan.out and "+ volume.logs" in plan.out, plan.out
    ok(disks, "apply", "--auto-approve")
    vdis = crane_vdis(sim)
    assert sorted(vdis) == ["data", "logs"]
    data = vdis["data"]
    assert int(data["virtual_size"]) == 4 * GIB and data["type"] == "user"
    assert data["other_config"]["crane/address"] == "volume.data" and data["other_config"]["crane/pool"] == "default"
    srs = sim.backdoor.records("SR")
    assert srs[data["SR"]]["name_label"] == "Local storage"  # the pool's default SR
    assert srs[vdis["logs"]["SR"]]["name_label"] == "fast-ssd"
    vbds = attached(sim, "db")
    assert sorted(vbds) == ["data", "logs"]
    for vbd in vbds.values():
        assert (vbd["mode"], vbd["type"], vbd["bootable"]) == ("RW", "Disk", False)
        assert vbd["currently_attached"]  # the VM runs
    assert sorted(vbd["userdevice"] for vbd in vbds.values()) == ["1", "2"]  # 0 is the template's root disk
    shown = json.loads(ok(disks, "state", "show", "vm.db"))
    assert sorted(shown["properties"]["disks"]) == ["default/data", "fast-ssd/logs"]
    assert shown["properties"]["template"] == "Debian Bookworm 12"
    assert json.loads(ok(disks, "state", "show", "volume.data"))["outputs"]["uuid"] == data["uuid"]
    assert disks.crane("plan", "--detailed-exitcode").code == 0

    # a grow in place: the same VDI, larger, still attached to the running VM
    plan = disks.crane("plan", "--var", "size=6")
    assert "~ volume.data" in plan.out and "vm.db" not in plan.out and "1 to update, 0 to replace" in plan.out, plan.out
    ok(disks, "apply", "--auto-approve", "--var", "size=6")
    grown = crane_vdis(sim)["data"]
    assert grown["uuid"] == data["uuid"] and int(grown["virtual_size"]) == 6 * GIB
    assert guests(sim)["db"]["uuid"] == shown["outputs"]["uuid"]
    assert disks.crane("plan", "--detailed-exitcode", "--var", "size=6").code == 0
    # shrinking is a new VDI, said as such; the VM that held the old one holds the new one, where it was, plugged in
    plan = disks.crane("plan", "--var", "size=5")
    assert "volume.data" in plan.out and "0 to update, 1 to replace" in plan.out, plan.out
    device = attached(sim, "db")["data"]["userdevice"]
    ok(disks, "apply", "--auto-approve", "--var", "size=5")
    smaller = crane_vdis(sim)["data"]
    assert smaller["uuid"] != data["uuid"] and int(smaller["virtual_size"]) == 5 * GIB
    again = attached(sim, "db")["data"]
    assert again["userdevice"] == device and again["currently_attached"]
    assert not [k for k in sim.backdoor.records("pool").popitem()[1]["other_config"] if k.startswith("crane/")]
    assert disks.crane("plan", "--detailed-exitcode", "--var", "size=5").code == 0

    # detach: the VBD goes from the running VM (unplugged), the VM stays, the volume dropped from the stack goes
    out = ok(disks, "apply", "--auto-approve", "--var", "size=5", "--var", "logs=false")
    assert "vm.db" in out
    assert sorted(attached(sim, "db")) == ["data"] and sorted(crane_vdis(sim)) == ["data"]
    assert guests(sim)["db"]["uuid"] == shown["outputs"]["uuid"]
    assert disks.crane("plan", "--detailed-exitcode", "--var", "size=5", "--var", "logs=false").code == 0

    ok(disks, "destroy", "--auto-approve", "--var", "size=5", "--var", "logs=false")
    assert guests(sim) == {} and crane_vdis(sim) == {}
    # the VM's own disk, from its template, went with it: only the templates' disks are left
    assert all(vdi["VBDs"] for vdi in sim.backdoor.records("VDI").values())


def test_a_vdi_destroyed_behind_cranes_back_is_made_and_attached_again(disks: ProjectDir, sim: Any) -> None:
    ok(disks, "apply", "--auto-approve", "--var", "logs=false")
    before = crane_vdis(sim)["data"]["uuid"]
    with login(sim) as api:
        vdi = api.VDI.get_by_uuid(before)
        for vbd in api.VDI.get_VBDs(vdi):
            api.VBD.unplug(vbd)
        api.VDI.destroy(vdi)
    plan = disks.crane("plan", "--var", "logs=false")
    assert "+ volume.data" in plan.out and "~ vm.db" in plan.out, plan.out
    ok(disks, "apply", "--auto-approve", "--var", "logs=false")
    again = crane_vdis(sim)["data"]
    assert again["uuid"] != before and sorted(attached(sim, "db")) == ["data"]
    assert attached(sim, "db")["data"]["currently_attached"]
    assert disks.crane("plan", "--detailed-exitcode", "--var", "logs=false").code == 0


TEMPLATES = '''from crane_iac import VM, Network, variable
lan = Network("lan", mode="isolated")
VM("app", vcpus=1, memory_mib=256, networks=[lan], template=variable("template"))
VM("plain", vcpus=1, memory_mib=256, networks=[lan])
'''


def test_a_vm_from_a_template_of_its_own_and_a_change_of_template_replaces_it(
        project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.xensim import PoolSpec, Simulator

    monkeypatch.setenv(PASSWORD_VAR, "unused")
    with Simulator(PoolSpec(templates=["Debian Bookworm 12", "Ubuntu Noble 24.04"]), tls=False) as sim:
        monkeypatch.setenv(PASSWORD_VAR, sim.password)
        write(project, sim, TEMPLATES, 'template = { type = "str", default = "Ubuntu Noble 24.04" }\n')
        ok(project, "apply", "--auto-approve")
        made = guests(sim)
        assert made["app"]["other_config"]["crane/template"] == "Ubuntu Noble 24.04"
        assert made["plain"]["other_config"]["crane/template"] == "Debian Bookworm 12"  # the endpoint's
        assert project.crane("plan", "--detailed-exitcode").code == 0
        # naming the endpoint's template is the same VM
        assert project.crane("plan", "--detailed-exitcode", "--var", "template=Debian Bookworm 12").code == 2
        plan = project.crane("plan", "--var", "template=Debian Bookworm 12")
        assert "vm.app" in plan.out and "template" in plan.out and "1 to replace" in plan.out, plan.out
        assert "vm.plain" not in plan.out, plan.out
        ok(project, "apply", "--auto-approve", "--var", "template=Debian Bookworm 12")
        assert guests(sim)["app"]["uuid"] != made["app"]["uuid"]
        assert guests(sim)["app"]["other_config"]["crane/template"] == "Debian Bookworm 12"
        # a template the pool lacks: said before anything changes
        plan = project.crane("plan", "--var", "template=Windows 11")
        assert plan.code != 0 and "'Windows 11' is not in the pool" in plan.err + plan.out, plan
        ok(project, "destroy", "--auto-approve", "--var", "template=Debian Bookworm 12")


@pytest.mark.parametrize(("volume", "says"), [
    ('Volume("data", capacity_gib=2, base="/images/debian.qcow2")', "base: a VDI on XenServer"),
    ('Volume("data", capacity_gib=2, format="raw")', "the SR decides a VDI's format"),
    ('Volume("data", clone=Volume("gold", capacity_gib=2))', "clone: crane's XenAPI provider makes empty VDIs"),
])
def test_what_xenserver_cannot_do_with_a_volume_is_refused_at_load(xen: ProjectDir, sim: Any, volume: str,
                                                                   says: str) -> None:
    xen.write_stack(f'''from crane_iac import VM, Volume
VM("db", vcpus=1, memory_mib=256, volumes=[{volume}])
''')
    result = xen.crane("plan")
    assert result.code != 0 and says in result.err, result
    assert "stacks/main.py:2" in result.err and "Traceback" not in result.err, result.err
    assert guests(sim) == {} and crane_vdis(sim) == {}


def test_libvirt_refuses_a_template(project: ProjectDir) -> None:
    project.write_stack('''from crane_iac import VM
VM("web", vcpus=1, memory_mib=256, template="Debian Bookworm 12")
''')
    result = project.crane("plan")
    assert result.code != 0 and "libvirt makes a VM from its volumes" in result.err, result
    assert "stacks/main.py:2" in result.err and "Traceback" not in result.err


def test_a_volume_in_an_sr_the_pool_lacks_is_reported_by_the_plan(xen: ProjectDir, sim: Any) -> None:
    xen.write_stack('''from crane_iac import VM, Volume
VM("db", vcpus=1, memory_mib=256, volumes=[Volume("data", capacity_gib=2, pool="nowhere")])
''')
    result = xen.crane("plan")
    assert result.code != 0 and "the SR 'nowhere' is not in the pool" in result.err + result.out, result
    assert "Traceback" not in result.err
    assert guests(sim) == {} and crane_vdis(sim) == {}
