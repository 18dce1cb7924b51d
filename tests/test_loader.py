"""The stack language: components, references, dependencies, outputs."""

from __future__ import annotations

from pathlib import Path

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
    from crane_iac.resources.base import current_registry

    path = tmp_path / "stack.py"
    path.write_text(STACK)
    load_stack(path)
    assert current_registry() is None
    assert VM("outside", vcpus=1, memory_mib=64).address == "vm.outside"  # usable without a loader
