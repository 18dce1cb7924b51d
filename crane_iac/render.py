"""Plans rendered for people: ANSI colour on a terminal, plain text under CI or NO_COLOR."""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol, TextIO

from crane_iac.objects import DEFAULT_ENDPOINT, Action, Verb
from crane_iac.planner.diff import KNOWN_AFTER_APPLY
from crane_iac.planner.model import LeaseRelease, Plan, ResourceChange, TierShown


class StepEvent(Protocol):
    """What the apply engine reports about one step."""

    @property
    def address(self) -> str: ...
    @property
    def verb(self) -> Verb: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def detail(self) -> str: ...


#: each action's sign in a plan (Terraform's), and its ANSI colour on a terminal
SIGNS = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE_THEN_CREATE: "-/+", Action.CREATE_THEN_DELETE: "+/-",
         Action.DELETE: "-", Action.NOOP: "="}
_COLOUR = {Action.CREATE: "32", Action.UPDATE: "33", Action.DELETE_THEN_CREATE: "31", Action.CREATE_THEN_DELETE: "31",
           Action.DELETE: "31", Action.NOOP: "36"}


def endpoint_order(changes: Iterable[ResourceChange]) -> list[str]:
    """The endpoints the changes happen on, the default one first, the others by name."""
    return sorted({c.endpoint for c in changes}, key=lambda e: (e != DEFAULT_ENDPOINT, e))


def value(v: Any) -> str:
    if isinstance(v, dict) and "$output" in v:
        return KNOWN_AFTER_APPLY
    if isinstance(v, str):
        return v
    return json.dumps(brief(v), sort_keys=True)


#: a text longer than this, or of several lines (a rendered configuration file), is shown by its size
LONG_TEXT = 120


def _is_long(text: str) -> bool:
    return len(text) > LONG_TEXT or "\n" in text.rstrip("\n")


def brief(v: Any) -> Any:
    """``v`` with every long text inside it replaced by its size: a plan lists what changes, not whole files."""
    if isinstance(v, str) and _is_long(v):
        return f"<text: {len(v.splitlines())} lines>"
    if isinstance(v, dict) and "$output" in v:
        return KNOWN_AFTER_APPLY
    if isinstance(v, dict):
        return {k: brief(x) for k, x in v.items()}
    if isinstance(v, list):
        return [brief(x) for x in v]
    return v


class FieldLine(NamedTuple):
    """One line of a field's change in a plan: ``what`` went from ``before`` to ``after``; or, for a long text or a
    list, ``what`` said in a head (``text, +1 −0 lines``) and its ``-``/``+`` lines in ``diff``."""

    what: str
    before: Any = None
    after: Any = None
    diff: tuple[str, ...] = ()

    def text(self) -> str:
        """The line as the text plan shows it (``what: before → after``, or the head alone)."""
        return self.what if self.diff else f"{self.what}: {value(self.before)} → {value(self.after)}"


def field_changes(name: str, before: Any, after: Any, *, depth: int = 0) -> list[FieldLine]:
    """A field's change line by line: a dict field by its changed keys, a list of the same length by its changed
    entries, a list that grows or shrinks by the entries added and removed (``-``/``+``), a long text by the lines
    that differ (at most ``TEXT_LINES`` of either), anything else as ``before → after``."""
    if depth < 2 and isinstance(before, dict) and isinstance(after, dict) and "$output" not in after:
        pairs = []
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                pairs.extend(field_changes(f'{name}["{key}"]', before.get(key), after.get(key), depth=depth + 1))
        return pairs
    if isinstance(before, list) and isinstance(after, list):
        if depth < 2 and len(before) == len(after):
            return [pair for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new
                    for pair in field_changes(f"{name}[{i}]", old, new, depth=depth + 1)]
        added = list(after)
        removed = []
        for entry in before:
            if entry in added:
                added.remove(entry)
            else:
                removed.append(entry)
        changed = [f"- {value(e)}" for e in removed] + [f"+ {value(e)}" for e in added]
        return [FieldLine(f"{name}: list, +{len(added)} −{len(removed)} entries", before, after,
                          _capped(changed, "entries"))]
    if isinstance(before, str) and isinstance(after, str) and (_is_long(before) or _is_long(after)):
        diff = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:1] in "+-"]
        added_lines = sum(1 for line in diff if line[0] == "+")
        return [FieldLine(f"{name}: text, +{added_lines} −{len(diff) - added_lines} lines", before, after,
                          _capped([f"{line[0]} {line[2:]}" for line in diff], "lines"))]
    return [FieldLine(name, before, after)]


def _capped(lines: list[str], what: str) -> tuple[str, ...]:
    if len(lines) <= TEXT_LINES:
        return tuple(lines)
    return (*lines[:TEXT_LINES], f"… {len(lines) - TEXT_LINES} more {what}")


#: the changed lines of a long text a plan shows
TEXT_LINES = 12


class _Paint:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text


def _attribute_lines(values: dict[str, Any]) -> list[str]:
    """A new resource's attributes, one per line (null ones left out), as Terraform's plan lists them."""
    shown = {k: v for k, v in values.items() if v is not None}
    width = max((len(k) for k in shown), default=0)
    return [f"      {k.ljust(width)} = {value(v)}" for k, v in sorted(shown.items())]


def _change_lines(change: ResourceChange, paint: _Paint) -> list[str]:
    sign, colour = SIGNS[change.action], _COLOUR[change.action]
    head = paint(f"{sign} {change.address}", colour)
    note = ""
    if change.action.is_replace:
        forced = [f.name for f in change.fields if f.forces_replacement]
        note = f"  (replace: {', '.join(forced)} cannot change in place)" if forced else "  (replace)"
    if change.reason:
        note += f"  ({change.reason})"
    if change.note:
        note += paint(f"  # {change.note}", "33")
    lines = []
    if change.action is Action.UPDATE or change.action.is_replace:
        for f in change.fields:
            mark = (paint("  # forces replacement", "31") if f.forces_replacement
                    else paint(f"  # {f.note}", "33") if f.note and change.action is Action.UPDATE else "")
            for shown in field_changes(f.name, f.before, f.after):
                lines.append(f"  {head}  {shown.text()}{mark}")
                lines.extend(f"      {line}" for line in shown.diff)
    if note or not lines:
        lines.insert(0, f"  {head}{note}")
    if change.action is Action.CREATE:
        lines.extend(_attribute_lines(change.after or {}))
    return lines


def _output_lines(plan: Plan) -> list[str]:
    lines = ["Changes to outputs:"]
    for f in plan.output_changes:
        if f.name not in plan.outputs:
            lines.append(f"  - {f.name} = {value(f.before)}  (removed)")
        elif f.before is None:
            lines.append(f"  + {f.name} = {value(f.after)}")
        else:
            lines.append(f"  ~ {f.name}: {value(f.before)} → {value(f.after)}")
    return lines


def _targeting_lines(plan: Plan) -> list[str]:
    scope = "the targets and everything that depends on them" if plan.destroy else "the targets and what they need"
    lines = [f"Warning: targeting is in effect (--target {', '.join(plan.targets)}): this plan covers only {scope}."]
    if plan.untargeted:
        shown = ", ".join(plan.untargeted[:5]) + (f" and {len(plan.untargeted) - 5} more" if len(plan.untargeted) > 5
                                                   else "")
        lines.append(f"{len(plan.untargeted)} other resource(s) have changes pending outside the targets ({shown}); "
                     "a plan without --target shows them.")
    else:
        lines.append("Nothing else is pending outside the targets.")
    return [*lines, ""]


#: changes shown in full; past it a plan is summarised (a 10,000-VM plan is read as JSON: `crane plan --json`)
DETAIL_LIMIT = 500


#: what the plan's scalable tiers are, in the text plan and the Markdown comment alike
TIERS_NOTE = "`crane autoscale` sets their size within the declared range"


def tier_line(tier: TierShown, *, address: str | None = None, size: str | None = None) -> str:
    """One scalable tier of a plan: its size in effect, the range, the stack's own size and who set the size, or,
    when the size in effect is not the setting's, that it was clamped into the range or ignored (never the setting's
    author named as if it held); ``address`` and ``size`` as the caller shows them (Markdown marks them up)."""
    if tier.owner == "stack":
        owner = "the stack's size"
    elif tier.effect == "clamped":
        owner = f"clamped into the range: {tier.owner} set {tier.asked} ({tier.why})"
    elif tier.effect == "ignored":
        owner = f"the stack's size: {tier.owner} set {tier.asked} ({tier.why}), which is not a number of servers"
    else:
        owner = f"set by {tier.owner}: {tier.why}"
    return (f"{address or tier.address} {tier.tier}: size {size or tier.size} in [{tier.min}, {tier.max}], the stack "
            f"says {tier.declared}; {owner}")


def override_line(override: dict[str, Any], *, mark: Callable[[str], str] = str) -> str:
    """A durable setting that beats the stack's own value: which value, which setting, who set it and how to hand it
    back; ``mark`` sets off keys and values as the caller shows them (Markdown puts them in code)."""
    key = override["key"]
    return (f"{mark(key)} = {mark(value(override['value']))}, not the stack's {mark(value(override['stack_value']))}: "
            f"set by {override['by']} at {override['at']} ({override['why']}); `crane setting unset {key} --why "
            "TEXT` hands it back to the stack")


#: what heads the plan's warning of the settings that beat the stack, and what it adds
OVERRIDES_HEAD = "durable settings override the stack's own values"
OVERRIDES_NOTE = "apply honours the settings"


def dropped_line(dropped: dict[str, Any], *, mark: Callable[[str], str] = str) -> str:
    """A setting that goes with the component this plan removes."""
    return (f"setting {mark(dropped['key'])} = {mark(value(dropped['value']))} (set by {dropped['by']}), removed "
            f"with {mark(dropped['component'])}")


#: what the plan says of the leases it gives back
LEASES_NOTE = "state only: nothing on the hypervisor changes; given back once the apply succeeds"


def release_line(release: LeaseRelease, *, mark: Callable[[str], str] = str) -> str:
    """A lease the apply gives back: its value, pool, holder and why."""
    return (f"{mark(release.value)} of pool {mark(release.pool)}, leased to {mark(release.address)} "
            f"({release.slot}): {release.why}")


def render_plan(plan: Plan, *, colour: bool = False, limit: int = DETAIL_LIMIT) -> str:
    paint = _Paint(colour)
    lines: list[str] = _targeting_lines(plan) if plan.targets else []
    if plan.overrides:
        lines.append(paint(f"Warning: {OVERRIDES_HEAD} ({OVERRIDES_NOTE}):", "33"))
        lines.extend(f"  {override_line(o)}" for o in plan.overrides)
        lines.append("")
    for warning in plan.warnings:
        lines.append(paint(f"Warning: {warning['address']}: {warning['message']}", "33"))
    if plan.warnings:
        lines.append("")
    if plan.drift:
        lines.append(paint("Drift", "1") + " (changed outside crane since the last apply; the plan below corrects it):")
        for d in plan.drift[:limit]:
            if d.gone:
                lines.append(f"  {paint('! ' + d.address, '35')}  deleted outside crane")
            for f in d.fields:
                lines.append(f"  {paint('! ' + d.address, '35')}  {f.name}: {value(f.before)} → {value(f.after)}")
        if len(plan.drift) > limit:
            lines.append(f"  … and {len(plan.drift) - limit} more resources drifted (the full list: --json)")
        lines.append("")
    changes = [c for c in plan.changes if c.action is not Action.NOOP or c.reason]
    if plan.settings:
        lines.append("Settings in effect (durable, honoured by every apply; `crane setting unset KEY` hands one back "
                     "to the stack):")
        lines.extend(f"  {s['key']} = {value(s['value'])}  # set by {s['by']} at {s['at']}: {s['why']}"
                     for s in plan.settings)
        lines.append("")
    if plan.tiers:
        lines.append(f"Scalable tiers ({TIERS_NOTE}):")
        lines.extend(f"  {tier_line(t)}" for t in plan.tiers)
        lines.append("")
    if plan.moves:
        lines.append("Moved (state only: the objects keep their names on the hypervisor):")
        lines.extend(f"  {old} has moved to {new}" for old, new in plan.moves)
        lines.append("")
    if plan.settings_dropped:
        lines.append("Settings removed with their components (each recorded in `crane state history`):")
        lines.extend(f"  - {dropped_line(d)}" for d in plan.settings_dropped)
        lines.append("")
    if plan.leases_released:
        lines.append(f"Leases given back to their pools ({LEASES_NOTE}):")
        lines.extend(f"  - {release_line(x)}" for x in plan.leases_released)
        lines.append("")
    if not changes and not plan.outputs_changed and not plan.moves and not plan.settings_dropped \
            and not plan.leases_released:
        lines.append("No changes for the targets." if plan.targets
                     else "No changes. The infrastructure matches the settings in effect, not the stack's own values "
                          "(see the warning above)." if plan.overrides
                     else "No changes. The infrastructure matches the stack.")
        return "\n".join(lines)
    if changes:
        lines.append(f"crane will make these changes to stack {paint(plan.stack, '1')}:")
        shown = changes[:limit]
        endpoints = endpoint_order(changes)
        if len(endpoints) == 1:
            for c in shown:
                lines.extend(_change_lines(c, paint))
        else:  # several endpoints: the changes grouped by where they happen
            for endpoint in endpoints:
                here = [c for c in shown if c.endpoint == endpoint]
                if here:
                    total = sum(1 for c in changes if c.endpoint == endpoint)
                    lines.append(f" on endpoint {paint(endpoint, '1')} ({total} change{'s' if total != 1 else ''}):")
                for c in here:
                    lines.extend(_change_lines(c, paint))
        if len(changes) > limit:
            lines.append(f"  … and {len(changes) - limit} more changes not shown; `crane plan --json` (or "
                         "`crane show PLANFILE --json`) has every one")
    if plan.outputs_changed:
        lines.append("")
        lines.extend(_output_lines(plan))
    counts = plan.counts()
    adopted = sum(1 for c in changes if c.action is Action.NOOP)
    lines.append("")
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
                 f"{counts['delete']} to delete" + (f", {adopted} to adopt" if adopted else "")
                 + (f", {len(plan.moves)} to move" if plan.moves else "")
                 + (f", {len(plan.settings_dropped)} setting(s) to remove" if plan.settings_dropped else "")
                 + (f", {len(plan.leases_released)} lease(s) to give back" if plan.leases_released else "") + ".")
    return "\n".join(lines)


def render_result(counts: dict[str, int]) -> str:
    """"2 created, 1 replaced" from an apply's counts, in a fixed order."""
    order = ["created", "updated", "replaced", "deleted", "adopted", "forgotten", "moved"]
    parts = [f"{counts[v]} {v}" for v in order if counts.get(v)]
    return ", ".join(parts) or "nothing changed"


class Progress:
    """Apply progress: a line per finished resource with its elapsed time; on a terminal, also a live status
    line (how many are done and which are running) redrawn under them. Plain writes: at 10,000 resources a
    rich-rendered line would cost more than the provider call it reports."""

    _COLOURS = {Verb.FAILED: "31", Verb.SKIPPED: "33"}

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream = stream
        self.live = live
        self.paint = _Paint(live)
        self.running: dict[str, str | None] = {}  # a running step → its last progress note
        self.finished = 0
        self.pending: list[str] = []  # lines not yet written: off a terminal they go out in blocks
        self.flushed_at = time.monotonic()

    def report(self, event: StepEvent) -> None:
        if event.verb is Verb.PROGRESS:  # a running step's note: in the status line on a terminal, else a line
            self.running[event.address] = event.detail
            if not self.live:
                self.pending.append(f"{event.address}: {event.detail} ({event.elapsed:.0f}s elapsed)\n")
        elif event.verb.starting:
            self.running[event.address] = None
        else:
            self.running.pop(event.address, None)
            self.finished += 1
            detail = f": {event.detail}" if event.detail else ""
            name = self.paint(event.address, self._COLOURS.get(event.verb, "32"))
            clear = "\033[2K\r" if self.live else ""
            self.pending.append(f"{clear}{name}: {event.verb} ({event.elapsed:.2f}s){detail}\n")
            if self.live or len(self.pending) >= 200 or time.monotonic() - self.flushed_at >= 0.5:
                self.flush()
        if self.live:
            self.flush()
            names = [f"{name} ({note})" if note else name for name, note in list(self.running.items())[:3]]
            more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
            self.stream.write(f"\033[2K\r{self.finished} done, {len(self.running)} running: "
                              f"{', '.join(names)}{more}")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.write("".join(self.pending))
        self.stream.flush()
        self.pending.clear()
        self.flushed_at = time.monotonic()

    def finish(self) -> None:
        self.flush()
        if self.live:
            self.stream.write("\033[2K\r")
            self.stream.flush()
