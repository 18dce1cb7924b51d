"""The JSON plan's schema (``crane plan --json``, ``crane plan --out``), derived from the ``Plan`` value itself so
that the two cannot drift apart; docs/plan.schema.json is this, written out (``python -m crane_iac.planner.schema``).
A change to the format bumps ``PLAN_FORMAT_VERSION``; tests/planner/test_plan_schema.py pins each version."""

from __future__ import annotations

import json
from typing import Any

from crane_iac.planner.model import PLAN_FORMAT_VERSION, Plan, plan_type


def plan_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a saved or printed plan."""
    schema = plan_type().json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://crane.invalid/schemas/plan-v{PLAN_FORMAT_VERSION}.json"
    schema["title"] = f"crane plan, format {PLAN_FORMAT_VERSION}"
    schema["properties"]["format_version"]["const"] = PLAN_FORMAT_VERSION
    return schema


def validate_plan_json(text: str) -> Plan:
    """Check a plan's JSON against the schema's types, as strictly as ``Plan.from_json`` reads a saved plan (raises
    pydantic's ValidationError), and return the plan."""
    return plan_type().validate_json(text, strict=True)


if __name__ == "__main__":
    print(json.dumps(plan_schema(), indent=2, sort_keys=True))
