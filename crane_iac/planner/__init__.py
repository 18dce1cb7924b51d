"""The pure planner: desired + recorded + live → Plan. No I/O, no provider, no state store."""

from crane_iac.planner.diff import make_plan, order_changes
from crane_iac.planner.model import (
    Action,
    Desired,
    Differ,
    Drift,
    FieldChange,
    Live,
    Plan,
    Recorded,
    ResourceChange,
)

__all__ = [
    "Action",
    "Desired",
    "Differ",
    "Drift",
    "FieldChange",
    "Live",
    "Plan",
    "Recorded",
    "ResourceChange",
    "make_plan",
    "order_changes",
]
