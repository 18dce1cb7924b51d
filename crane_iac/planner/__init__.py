"""The pure planner: desired + recorded + live → Plan. No I/O, no provider, no state store."""

from crane_iac.planner.diff import make_plan, order_changes
from crane_iac.planner.model import Differ, Drift, Phase, Plan, ResourceChange

__all__ = ["Differ", "Drift", "Phase", "Plan", "ResourceChange", "make_plan", "order_changes"]
