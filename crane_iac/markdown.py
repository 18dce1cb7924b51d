"""A plan rendered as Markdown for a pull-request comment (``crane plan --format markdown``): a summary line,
drift apart from changes, the changes grouped by endpoint with each resource's fields in a collapsible section,
and the stack outputs that change. GitHub and GitLab render ``<details>`` and fenced ``diff`` blocks."""

from __future__ import annotations

from typing import Any

from crane_iac.objects import DEFAULT_ENDPOINT, Action
from crane_iac.planner.model import Plan, ResourceChange
from crane_iac.render import (
    LEASES_NOTE,
    OVERRIDES_HEAD,
    OVERRIDES_NOTE,
    SIGNS,
    TIERS_NOTE,
    dropped_line,
    endpoint_order,
    field_changes,
    override_line,
    release_line,
    tier_line,
    value,
)

_VERB = {Action.CREATE: "create", Action.UPDATE: "update in place", Action.DELETE_THEN_CREATE: "replace",
         Action.CREATE_THEN_DELETE: "replace (new one first)", Action.DELETE: "destroy", Action.NOOP: "record"}

#: resources shown in full; past it the comment lists the rest by address (a PR comment has a size limit)
DETAIL_LIMIT = 200


def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"**{counts[k]} to {k}**" if counts[k] else f"{counts[k]} to {k}"
             for k in ("create", "update", "replace", "delete")]
    head = f"### crane plan for stack {_code(plan.stack)}"
    if plan.destroy:
        head += " (destroy)"
    if not plan.has_changes:
        if plan.overrides:
            return (f"{head}: no changes\n\nThe infrastructure matches the settings in effect, not the stack's own "
                    "values.")
        return f"{head}: no changes\n\nThe infrastructure matches the stack."
    if plan.leases_released:
        parts.append(f"**{len(plan.leases_released)} lease(s) to give back**")
    return f"{head}: {', '.join(parts)}"


def _body(change: ResourceChange) -> list[str]:
    lines: list[str] = []
    if change.action is Action.CREATE:
        lines.extend(f"+ {k} = {value(v)}" for k, v in sorted((change.after or {}).items()) if v is not None)
    elif change.action is Action.DELETE:
        lines.extend(f"- {k} = {value(v)}" for k, v in sorted((change.before or {}).items()) if v is not None)
    else:
        for f in change.fields:
            note = "  # forces replacement" if f.forces_replacement else f"  # {f.note}" if f.note else ""
            for shown in field_changes(f.name, f.before, f.after):
                if shown.diff:  # a long text or a list: its head, then the lines or entries added and removed
                    lines.append(f"~ {shown.what}{note}")
                    lines.extend(shown.diff)
                else:
                    lines.append(f"- {shown.what} = {value(shown.before)}")
                    lines.append(f"+ {shown.what} = {value(shown.after)}{note}")
    return lines


def _change(change: ResourceChange) -> list[str]:
    summary = f"<code>{SIGNS[change.action]} {change.address}</code> {_VERB[change.action]}"
    if change.reason:
        summary += f" ({change.reason})"
    if change.from_endpoint:
        summary += f", moving from endpoint {change.from_endpoint}"
    if change.note:
        summary += f" — {_cell(change.note)}"
    body = _body(change)
    if not body:
        return [f"- {summary}"]
    return ["<details>", f"<summary>{summary}</summary>", "", "```diff", *body, "```", "", "</details>"]


def _drift(plan: Plan) -> list[str]:
    rows = []
    for d in plan.drift:
        if d.gone:
            rows.append(f"| {_code(d.address)} | | | deleted outside crane |")
        rows.extend(f"| {_code(d.address)} | {_code(f.name)} | {_cell(value(f.before))} | {_cell(value(f.after))} |"
                    for f in d.fields)
    return ["<details>", f"<summary>Drift: {len(plan.drift)} resource(s) changed outside crane since the last apply "
            "(the changes below correct it)</summary>", "", "| Resource | Field | Recorded | Now |",
            "|---|---|---|---|", *rows, "", "</details>"]


def render_markdown(plan: Plan, *, limit: int = DETAIL_LIMIT) -> str:
    lines = [_summary(plan), ""]
    meta = f"Made against state serial {plan.serial}"
    if not plan.refreshed:
        meta += ", without reading the hypervisors (`--refresh=false`)"
    lines += [meta + ".", ""]
    if plan.targets:
        lines += [f"> **Targeting is in effect** ({', '.join(_code(t) for t in plan.targets)}): "
                  f"{len(plan.untargeted)} other resource(s) have changes pending outside the targets.", ""]
    if plan.overrides:
        lines += [f"> **Warning: {OVERRIDES_HEAD}** ({OVERRIDES_NOTE}):",
                  *[f"> - {override_line(o, mark=_code)}" for o in plan.overrides]]
        lines.append("")
    if plan.drift:
        lines += [*_drift(plan), ""]
    if plan.tiers:
        lines += [f"**Scalable tiers** ({TIERS_NOTE}):",
                  *["- " + tier_line(t, address=_code(t.address), size=f"**{t.size}**") for t in plan.tiers],
                  ""]
    if plan.moves:
        lines += ["**Moved** (state only):", *[f"- {_code(old)} → {_code(new)}" for old, new in plan.moves], ""]
    if plan.settings_dropped:
        lines += ["**Settings removed** with their components:",
                  *[f"- {dropped_line(d, mark=_code)}" for d in plan.settings_dropped], ""]
    if plan.leases_released:
        lines += [f"**Leases given back** ({LEASES_NOTE}):",
                  *[f"- {release_line(x, mark=_code)}" for x in plan.leases_released], ""]
    changes = [c for c in plan.changes if c.action is not Action.NOOP or c.reason]
    endpoints = endpoint_order(changes)
    shown = 0
    for endpoint in endpoints:
        here = [c for c in changes if c.endpoint == endpoint]
        if len(endpoints) > 1 or endpoint != DEFAULT_ENDPOINT:
            lines += [f"#### Endpoint {_code(endpoint)}: {len(here)} change{'s' if len(here) != 1 else ''}", ""]
        for change in here:
            if shown < limit:
                lines += _change(change)
            shown += 1
        lines.append("")
    if shown > limit:
        lines += [f"… and {shown - limit} more changes; the full plan is in `crane plan --json`.", ""]
    if plan.output_changes:
        lines += ["#### Outputs", "", "| Output | Before | After |", "|---|---|---|"]
        lines += [f"| {_code(f.name)} | {_cell(_shown(f.before))} | {_cell(_shown(f.after))} |"
                  for f in plan.output_changes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _shown(v: Any) -> str:
    return "(none)" if v is None else value(v)
