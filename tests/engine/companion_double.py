"""A test double, named as one: a companion ``notebook`` beside every endpoint, serving the kind ``note`` (state
only, like a configuration run). It proves the companion seam: a kind that is not a hypervisor object on a libvirt
endpoint, calls routed to the companion, the hypervisor's ``reaches_guests`` seen by it, and its remark in the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from crane_iac.objects import FieldChange, Kind, Live
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest, changed_fields
from crane_iac.resources.base import Resource

#: (verb, physical) of every call that changed something, in this process
CALLS: list[tuple[str, str]] = []


class Note(Resource):
    """``Note("after-web", text="...", about=web.uuid)``: a note kept in state about something on the endpoint."""

    kind: ClassVar[str] = "note"
    kind_rule: ClassVar[Kind | None] = Kind("note", provider="notebook")
    text: str
    about: Any = None

    def properties(self) -> dict[str, Any]:
        from crane_iac.resources.base import plain
        return {"text": self.text, "about": plain(self.about)}


class Notebook(Provider):
    provider_type = "notebook"
    kinds = ("note",)

    def __init__(self, hypervisor: Provider, state_dir: Path) -> None:
        self.hypervisor = hypervisor
        self.state_dir = state_dir

    @property
    def listed_kinds(self) -> frozenset[str]:
        return frozenset()

    def read_all(self) -> list[Live]:
        return []

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return changed_fields(before, after, {"text": "live", "about": "live"}, notes={"live": "writes it again"})

    def remark(self, kind: str, properties: dict[str, Any]) -> str | None:
        return None if self.hypervisor.reaches_guests else "kept only: no guest to tell"

    def create(self, request: CreateRequest) -> Live:
        CALLS.append(("create", request.physical))
        return Live(request.kind, request.physical, dict(request.properties), {"told": self.hypervisor.reaches_guests})

    def update(self, request: UpdateRequest) -> Live:
        CALLS.append(("update", request.physical))
        return Live(request.kind, request.physical, dict(request.after), {"told": self.hypervisor.reaches_guests})

    def delete(self, request: DeleteRequest) -> None:
        CALLS.append(("delete", request.physical))


def open_companion(hypervisor: Provider, *, state_dir: Path, mutating: bool, project_dir: Path) -> Notebook:
    return Notebook(hypervisor, state_dir)
