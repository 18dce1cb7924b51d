"""The JSON plan's documented schema is pinned: docs/plan.schema.json is what the Plan value gives, and a change of
the format without a new PLAN_FORMAT_VERSION fails here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from crane_iac.objects import Action, FieldChange, Reach, Reason
from crane_iac.planner.model import PLAN_FORMAT_VERSION, Drift, Plan, ResourceChange
from crane_iac.planner.schema import plan_schema, validate_plan_json

DOC = Path(__file__).resolve().parents[2] / "docs" / "plan.schema.json"
#: the schema of each format version, by the SHA-256 of its canonical JSON: a new format needs a new version here
PINNED = {2: "fbd34c4d97640ef857574d708f48c110a89a36d173e0fc373ec480350ee9d20e",
          3: "99dd3d2b95d4e7ebde618c6bc9559b13fb691a45e08ae31d899354072dfccc48",
          4: "055702229bd987473814d08dcbdaf3612265d7228dadec514ab99c132f28629d",
          5: "5f6e7515445ddbfbff1dc17343e769a4f69abadb08ba95d66c1e8373a1f4a21a",
          6: "83d06a0cdb979a44c5a5c2122d7c7da98efa00ca68dffc256b967ee8392e3cdb",
          7: "cbc6db5468dbc4af2bf1a97da5936f9fc76b48ca3506ffbf1cb6eb19a500578c",
          8: "e24c4a889b5dec4ba57127dc771cefef35f95231d29d65e42bf7a0417bc80b0d",
          9: "b654fa198841d5b4914564c7938f85f448cfcfdb58e6e0b928d7db37a418e6fe",
          10: "cad4193df896ae08062cf6f348fd80b01240d3984ee434bf18767ecd2a43b16f",
          11: "84c3555e0ee3363fd2904db7c662def47299894ce3e3cd11fd04c1243fd4a725"}


def canonical(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def test_the_documented_schema_is_the_plans_own() -> None:
    assert DOC.read_text() == canonical(plan_schema()), \
        "docs/plan.schema.json is out of date: python -m crane_iac.planner.schema > docs/plan.schema.json"


def test_the_format_cannot_change_without_a_new_version() -> None:
    digest = hashlib.sha256(canonical(plan_schema()).encode()).hexdigest()
    assert PINNED.get(PLAN_FORMAT_VERSION) == digest, (
        f"the plan's JSON format changed: bump PLAN_FORMAT_VERSION (a plan saved by an older crane is refused), "
        f"pin the new version to {digest!r} here, and write docs/plan.schema.json again")


def test_a_plan_of_every_kind_of_change_validates_and_round_trips() -> None:
    plan = Plan("main", "lineage-1", 7, changes=[
        ResourceChange("vm.a", "vm", "a", Action.CREATE, after={"vcpus": 1}),
        ResourceChange("vm.b", "vm", "b", Action.UPDATE, [FieldChange("vcpus", 2, 1, Reach.RESTART, True,
                                                                      "restarts the guest")],
                       before={"vcpus": 2}, after={"vcpus": 1}),
        ResourceChange("vm.c", "vm", "c-r2", Action.CREATE_THEN_DELETE, [FieldChange("name", "c", "c-r2",
                                                                                     Reach.REPLACE)],
                       from_physical="c", endpoint="dc2", from_endpoint="default"),
        ResourceChange("vm.d", "vm", "d", Action.DELETE, reason=Reason.ORPHAN),
    ], drift=[Drift("vm.b", [FieldChange("memory_mib", 256, 512)])], outputs={"ip": {"$output": "vm.a",
                                                                                     "attribute": "ipv4"}})
    text = plan.to_json()
    assert validate_plan_json(text) == plan == Plan.from_json(text)
    assert json.loads(text)["format_version"] == PLAN_FORMAT_VERSION


def test_a_foreign_file_fails_validation() -> None:
    with pytest.raises(ValidationError):
        validate_plan_json(json.dumps({"stack": "main", "lineage": "x", "serial": "seven"}))
