"""Plans and state rendered for people (rich markup; plain text under CI or NO_COLOR)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from crane_iac.planner.model import Action, Plan, ResourceChange

_SIGN = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.DELETE_THEN_CREATE: ("-/+", "red"),
    Action.CREATE_THEN_DELETE: ("+/-", "red"),
    Action.DELETE: ("-", "red"),
    Action.NOOP: ("=", "cyan"),
}


def value(v: Any) -> str:
    if isinstance(v, dict) and "$output" in v:
        return "(known after apply)"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def _change_lines(change: ResourceChange) -> list[str]:
    sign, colour = _SIGN[change.action]
    head = f"[{colour}]{escape(sign)} {escape(change.address)}[/]"
    note = ""
    if change.action.is_replace:
        forced = [f.name for f in change.fields if f.forces_replacement]
        note = f"  (replace: {', '.join(forced)} cannot change in place)" if forced else "  (replace)"
    if change.reason:
        note += f"  ({escape(change.reason)})"
    if change.action in (Action.UPDATE,) or change.action.is_replace:
        lines = []
        for f in change.fields:
            mark = "  [red]# forces replacement[/]" if f.forces_replacement else ""
            lines.append(f"  {head}  {escape(f.name)}: {escape(value(f.before))} → {escape(value(f.after))}{mark}")
        if note:
            lines.insert(0, f"  {head}{escape(note)}" if not lines else f"  {head}{note}")
        return lines or [f"  {head}{note}"]
    return [f"  {head}{note}"]


def render_plan(plan: Plan) -> str:
    lines: list[str] = []
    if plan.drift:
        lines.append("[bold]Drift[/] (changed outside crane since the last apply; the plan below corrects it):")
        for d in plan.drift:
            if d.gone:
                lines.append(f"  [magenta]! {escape(d.address)}[/]  deleted outside crane")
            for f in d.fields:
                lines.append(f"  [magenta]! {escape(d.address)}[/]  {escape(f.name)}: "
                             f"{escape(value(f.before))} → {escape(value(f.after))}")
        lines.append("")
    changes = [c for c in plan.changes if c.action is not Action.NOOP or c.reason]
    if not changes and not plan.outputs_changed:
        lines.append("No changes. The infrastructure matches the stack.")
        return "\n".join(lines)
    if changes:
        lines.append(f"crane will make these changes to stack [bold]{escape(plan.stack)}[/]:")
        for c in changes:
            lines.extend(_change_lines(c))
    if plan.outputs_changed:
        lines.append("Outputs will change: " + ", ".join(sorted(plan.outputs)))
    counts = plan.counts()
    lines.append("")
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
                 f"{counts['delete']} to delete.")
    return "\n".join(lines)
