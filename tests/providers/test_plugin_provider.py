"""Acceptance (issue 16): a provider type written here, and nowhere else, registered through the entry-point group
``crane_iac.providers`` of a distribution this test lays out on sys.path, serves the VMs and networks of a stack,
with endpoint keys of its own that crane.toml's loader checks with the type's model. Nothing outside this file
knows of it.

The provider, ``shelf``, is an in-memory hypervisor kept in a JSON file in its sandbox directory (so that one run
sees what the last one made): a few dozen lines against the Provider contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live, Reach
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest, changed_fields
from tests.conftest import ProjectDir, assert_clean_error


class Settings(BaseModel):
    """The shelf's own crane.toml keys."""

    model_config = ConfigDict(extra="forbid", strict=True)
    zone: str
    capacity: int = Field(default=10, ge=1)


class Shelf(Provider):
    provider_type = "shelf"
    kinds = ("network", "vm")

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.objects: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def read_all(self) -> list[Live]:
        return [Live(o["kind"], o["physical"], o["properties"], {"zone": self.settings.zone}, *o["owner"])
                for o in self.objects.values()]

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return changed_fields(before, after, {"memory_mib": Reach.LIVE, "max_memory_mib": Reach.LIVE})

    def create(self, request: CreateRequest) -> Live:
        if request.kind == "vm" and sum(o["kind"] == "vm" for o in self.objects.values()) >= self.settings.capacity:
            raise ProviderError(f"the shelf in {self.settings.zone} holds {self.settings.capacity} VMs at most")
        self.objects[f"{request.kind}/{request.physical}"] = {
            "kind": request.kind, "physical": request.physical, "properties": request.properties,
            "owner": [request.owner.stack, request.owner.address]}
        return self.read_one(request.kind, request.physical)

    def update(self, request: UpdateRequest) -> Live:
        self.objects[f"{request.kind}/{request.physical}"]["properties"] = request.after
        return self.read_one(request.kind, request.physical)

    def delete(self, request: DeleteRequest) -> None:
        self.objects.pop(f"{request.kind}/{request.physical}", None)

    def read_one(self, kind: str, physical: str) -> Live:
        return next(live for live in self.read_all() if (live.kind, live.physical) == (kind, physical))

    def checkpoint(self) -> None:
        self.path.write_text(json.dumps(self.objects))


#: what the registry asked of this module, in order (``prepare`` must come before each opening)
CALLS: list[str] = []


def prepare() -> None:
    CALLS.append("prepare")


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool, lock_timeout: float = 0.0) -> Shelf:
    CALLS.append("open")
    sandbox_dir.mkdir(parents=True, exist_ok=True)
    return Shelf(sandbox_dir / "shelf.json", Settings.model_validate({k: v for k, v in settings.items() if k != "uri"}))


STACK = '''from crane_iac import VM, Network, variable
lan = Network("lan", mode="isolated", ipv4="10.9.0.0/24")
for i in range(1, variable("web") + 1):
    VM(f"web-{i}", vcpus=1, memory_mib=variable("memory"), networks=[lan])
'''
CONFIG = '''[stacks.main]
file = "stacks/main.py"
provider = "shelf"
{settings}
[stacks.main.vars]
web = {{ type = "int", default = 2 }}
memory = {{ type = "int", default = 256 }}
'''


@pytest.fixture
def shelf(project: ProjectDir, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shelf registered as a distribution's entry point (a dist-info on sys.path); its objects' file."""
    site = tmp_path_factory.mktemp("site")
    info = site / "crane_shelf-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crane-shelf\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[crane_iac.providers]\nshelf = {__name__}:open_endpoint\n")
    monkeypatch.syspath_prepend(str(site))
    project.write_stack(STACK)
    project.write_config(CONFIG.format(settings='zone = "eu-1"\ncapacity = 3'))
    return project.root / ".crane" / "shelf.json"


def test_a_provider_from_an_entry_point_serves_a_stack(project: ProjectDir, shelf: Path) -> None:
    CALLS.clear()
    plan = project.crane("plan")
    assert plan.code == 0 and "Plan: 3 to create" in plan.out, plan
    assert CALLS == ["prepare", "open"]  # the type's own imports made before its connection's thread starts
    assert project.crane("apply", "--auto-approve").code == 0
    held = json.loads(shelf.read_text())
    assert sorted(held) == ["network/lan", "vm/web-1", "vm/web-2"]
    assert held["vm/web-1"]["owner"] == ["main", "vm.web-1"]
    assert held["vm/web-2"]["properties"]["nics"][0]["network"] == "lan"
    assert json.loads(project.crane("state", "show", "vm.web-1").out)["outputs"] == {"zone": "eu-1"}
    assert project.crane("plan", "--detailed-exitcode").code == 0  # read back as made: no changes

    # an in-place change, as the shelf's diff judges it, and drift: an object gone from the shelf is made again
    del held["vm/web-2"]
    shelf.write_text(json.dumps(held))
    plan = project.crane("plan", "--var", "memory=512")
    assert "~ vm.web-1" in plan.out and "+ vm.web-2" in plan.out, plan
    assert "Plan: 1 to create, 1 to update, 0 to replace" in plan.out
    assert project.crane("apply", "--auto-approve", "--var", "memory=512").code == 0
    assert json.loads(shelf.read_text())["vm/web-1"]["properties"]["memory_mib"] == 512

    # the shelf's own rule, refused at apply and reported cleanly; what it made before stays recorded
    assert_clean_error(project.crane("apply", "--auto-approve", "--var", "web=4", "--var", "memory=512"),
                       "the shelf in eu-1 holds 3 VMs at most")
    held = json.loads(shelf.read_text())
    assert len(held) == 4 and {"network/lan", "vm/web-1", "vm/web-2"} < set(held)
    recorded = project.crane("state", "list").out.split()
    assert sorted(a for a in recorded if "." in a) == sorted(f"{o['kind']}.{o['physical']}" for o in held.values())
    assert project.crane("destroy", "--auto-approve").code == 0
    assert json.loads(shelf.read_text()) == {}


def test_the_endpoint_keys_are_checked_by_the_providers_own_model(project: ProjectDir, shelf: Path) -> None:
    project.write_config(CONFIG.format(settings='zome = "eu-1"\ncapacity = "3"\naddress_timeout = 5'))
    result = project.crane("plan")
    assert_clean_error(result, "crane.toml:4: stacks.main.zome: unknown key; did you mean 'zone'?",
                       "crane.toml:5: stacks.main.capacity: expected an integer, got a string '3'",
                       # a libvirt key means nothing to the shelf
                       "crane.toml:6: stacks.main.address_timeout: unknown key; the keys here are capacity, file, ")
    assert "zone: required key is missing" not in result.err  # the suggestion names it already
    project.write_config(CONFIG.format(settings='capacity = 0'))
    assert_clean_error(project.crane("plan"), "crane.toml:1: stacks.main.zone: required key is missing",
                       "crane.toml:4: stacks.main.capacity: Input should be greater than or equal to 1")
    assert not shelf.exists()
