"""A test double, named as one: a provider type ``memo`` whose only kind, ``memo``, exists in state alone (it lists
nothing live), as an address lease or a finished configuration run will. It proves the plug-in seams: a provider
type chosen by name from crane.toml, a kind that is not a hypervisor object, and ``listed_kinds``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from crane_iac.objects import FieldChange, Kind, Live, Owner
from crane_iac.providers.base import Provider, changed_fields
from crane_iac.resources.base import Resource

#: every create this process made, so a test can tell a recreation from a no-op
CREATED: list[str] = []


class Memo(Resource):
    """A note kept in state: ``Memo("release", text="v1")``."""

    kind: ClassVar[str] = "memo"
    kind_rule: ClassVar[Kind | None] = Kind("memo", provider="memo")
    text: str

    def properties(self) -> dict[str, Any]:
        return {"text": self.text}


class MemoProvider(Provider):
    kinds = ("memo",)

    @property
    def listed_kinds(self) -> frozenset[str]:
        return frozenset()  # state-only: nothing to list

    def read_all(self) -> list[Live]:
        return []

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return changed_fields(before, after, {"text": "live"})

    def create(self, kind: str, physical: str, properties: dict[str, Any], owner: Owner) -> Live:
        CREATED.append(physical)
        return Live(kind, physical, dict(properties), {"length": len(properties["text"])})

    def update(self, kind: str, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        return Live(kind, physical, dict(after), {"length": len(after["text"])})

    def delete(self, kind: str, physical: str, properties: dict[str, Any]) -> None:
        pass


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> MemoProvider:
    return MemoProvider()
