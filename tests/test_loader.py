"""The stack language: components, references, dependencies, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from crane_iac.errors import DiagnosticsError
from crane_iac.loader import load_stack

STACK = '''
from crane_iac import VM, Component, Network, Volume, export


class AppDomain(Component):
    kind = "appdomain"
    web_count: int = 2

    def build(self) -> None:
        self.lan = Network("lan", ipv4="10.80.0.0/24")
        for i in range(self.web_count):
            VM(f"web-{i}", vcpus=1, memory_mib=256, networks=[self.lan])


shop = AppDomain("shop", web_count=3)
monitor = VM("monitor", vcpus=1, memory_mib=128, depends_on=[shop])
data = Volume("data", capacity_gib=5)
clone = Volume("clone", capacity_gib=5, base=data)
export("monitor-uuid", monitor.uuid)
export("webs", 3)
'''


def test_components_nest_addresses_and_prefix_names(tmp_path: Path) -> None:
    path = tmp_path / "stack.py"
    path.write_text(STACK)
    loaded = load_stack(path)
    by_address = {d.address: d for d in loaded.desired}
    assert loaded.components == ["appdomain.shop"]
    assert by_address["appdomain.shop/vm.web-2"].physical == "shop-web-2"
    assert by_address["appdomain.shop/vm.web-2"].dependencies == ["appdomain.shop/network.lan"]
    assert by_address["appdomain.shop/vm.web-0"].properties["nics"][0]["network"] == "shop-lan"
    # depending on a component means depending on every child
    assert by_address["vm.monitor"].dependencies == [
        "appdomain.shop/network.lan", "appdomain.shop/vm.web-0", "appdomain.shop/vm.web-1", "appdomain.shop/vm.web-2"]
    assert by_address["volume.clone"].properties["base"] == "default/data"
    assert by_address["volume.clone"].dependencies == ["volume.data"]
    assert loaded.outputs == {"monitor-uuid": {"$output": "vm.monitor", "attribute": "uuid"}, "webs": 3}
    assert by_address["vm.monitor"].line == 16 and by_address["vm.monitor"].file == str(path)


def test_macs_are_stable_and_distinct(tmp_path: Path) -> None:
    path = tmp_path / "stack.py"
    path.write_text(STACK)
    first = {d.address: d.properties.get("nics") for d in load_stack(path).desired}
    second = {d.address: d.properties.get("nics") for d in load_stack(path).desired}
    assert first == second
    macs = [nic["mac"] for nics in first.values() if nics for nic in nics]
    assert len(macs) == len(set(macs)) == 3 and all(m.startswith("52:54:00:") for m in macs)


def test_no_registry_leaks_between_loads(tmp_path: Path) -> None:
    from crane_iac import VM
    from crane_iac.resources.registry import current_registry

    path = tmp_path / "stack.py"
    path.write_text(STACK)
    load_stack(path)
    assert current_registry() is None
    assert VM("outside", vcpus=1, memory_mib=64).address == "vm.outside"  # usable without a loader


def test_strict_fields_take_what_stacks_legitimately_pass(tmp_path: Path) -> None:
    """Strict typing refuses coercion, not the sequences, Literal strings, outputs and ints stacks pass."""
    path = tmp_path / "stack.py"
    path.write_text('''
from crane_iac import VM, Component, Network, Volume

class Pair(Component):
    kind = "pair"
    size: int = 1
    ratio: float = 1.0

    def build(self) -> None:
        VM("x", vcpus=self.size, memory_mib=64)

lan = Network("lan", mode="isolated", ipv4="10.3.0.0/24")
disk = Volume("disk", capacity_gib=2, format="raw")
first = VM("first", vcpus=1, memory_mib=64, description="plain text")
VM("second", vcpus=2, memory_mib=128, networks=(lan,), volumes=(disk,), depends_on=(first,),
   ignore_changes=("running",), description=first.uuid)
Pair("p", size=2, ratio=3)
''')
    by_address = {d.address: d for d in load_stack(path).desired}
    second = by_address["vm.second"]
    assert second.properties["nics"][0]["network"] == "lan" and second.properties["disks"] == ["default/disk"]
    assert second.dependencies == ["network.lan", "vm.first", "volume.disk"]
    assert second.ignore_changes == ["running"]
    assert second.properties["description"] == {"$output": "vm.first", "attribute": "uuid"}
    assert by_address["vm.first"].properties["description"] == "plain text"
    assert by_address["pair.p/vm.x"].properties["vcpus"] == 2


def test_repository_stacks_load_with_their_declared_variables(tmp_path: Path) -> None:
    from crane_iac.config import load_project

    repo = Path(__file__).resolve().parent.parent
    project = load_project(repo / "crane.toml")
    _, demo = project.stack("demo")
    demo_addresses = {d.address for d in load_stack(repo / demo.file, project.resolve_vars(demo, {})).desired}
    assert {"network.lan", "volume.web-2-root", "vm.web-2", "vm.db"} <= demo_addresses
    (tmp_path / "crane.toml").write_text(f'''
[stacks.web]
file = "{repo / "stacks" / "tinyweb.py"}"
[stacks.web.vars]
prefix = {{ type = "str", default = "t-" }}
web_count = {{ type = "int", default = 2 }}
vcpus = {{ type = "int", default = 1 }}
memory_mib = {{ type = "int", default = 128 }}
autostart = {{ type = "bool", default = false }}
subnet = {{ type = "str", default = "10.9.0.0/24" }}
mode = {{ type = "str", default = "open" }}
pool_dir = {{ type = "str", default = "/var/lib/t-pool" }}
kernel = {{ type = "str", default = "/boot/vmlinuz" }}
initrd = {{ type = "str", default = "/boot/initrd.img" }}
cmdline = {{ type = "str", default = "console=ttyS0" }}
''')
    web_project = load_project(tmp_path / "crane.toml")
    _, web = web_project.stack("web")
    variables = web_project.resolve_vars(web, {"vcpus": "2", "autostart": "true"})
    desired = {d.address: d for d in load_stack(Path(web.file), variables).desired}
    assert desired["vm.t-web-2"].properties["vcpus"] == 2 and desired["vm.t-web-2"].properties["autostart"] is True
    assert desired["network.t-lan"].properties["mode"] == "open"


def test_a_hypervisor_name_replaces_the_derived_one_and_what_follows_from_it(tmp_path: Path) -> None:
    path = tmp_path / "stack.py"
    path.write_text('''from crane_iac import VM, Component, Network

class Site(Component):
    kind = "site"
    def build(self) -> None:
        self.lan = Network("lan", hypervisor_name="site-net", ipv4="10.81.0.0/24")
        VM("web", vcpus=1, memory_mib=128, networks=[self.lan])

Site("east", hypervisor_name="e")
VM("db", hypervisor_name="pg", vcpus=1, memory_mib=128)
''')
    loaded = load_stack(path)
    by_address = {d.address: d for d in loaded.desired}
    assert by_address["vm.db"].physical == "pg"
    # taken as it is, not prefixed; a component's is the prefix of its children's
    assert by_address["site.east/network.lan"].physical == "site-net"
    assert by_address["site.east/vm.web"].physical == "e-web"
    assert by_address["site.east/vm.web"].properties["nics"][0]["network"] == "site-net"
    # the recorded name wins (as after a move): an object keeps the name it was created with
    assert load_stack(path, physical_names={"vm.db": "db"}).desired[-1].physical == "db"
    path.write_text('from crane_iac import VM\nVM("db", hypervisor_name="my db", vcpus=1, memory_mib=128)\n')
    with pytest.raises(DiagnosticsError) as caught:
        load_stack(path)
    assert "hypervisor_name: 'my db' is not a safe hypervisor name" in str(caught.value.diagnostics[0])
