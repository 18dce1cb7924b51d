"""Plans rendered for people: ANSI colour on a terminal, plain text under CI or NO_COLOR."""

from __future__ import annotations

import json
from typing import Any, Protocol, TextIO

from crane_iac.planner.diff import KNOWN_AFTER_APPLY
from crane_iac.planner.model import Action, Plan, ResourceChange


class StepEvent(Protocol):
    """What the apply engine reports about one step."""

    address: str
    verb: str
    elapsed: float
    detail: str

_SIGN = {
    Action.CREATE: ("+", "32"),
    Action.UPDATE: ("~", "33"),
    Action.DELETE_THEN_CREATE: ("-/+", "31"),
    Action.CREATE_THEN_DELETE: ("+/-", "31"),
    Action.DELETE: ("-", "31"),
    Action.NOOP: ("=", "36"),
}


def value(v: Any) -> str:
    if isinstance(v, dict) and "$output" in v:
        return KNOWN_AFTER_APPLY
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


class _Paint:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text


def _change_lines(change: ResourceChange, paint: _Paint) -> list[str]:
    sign, colour = _SIGN[change.action]
    head = paint(f"{sign} {change.address}", colour)
    note = ""
    if change.action.is_replace:
        forced = [f.name for f in change.fields if f.forces_replacement]
        note = f"  (replace: {', '.join(forced)} cannot change in place)" if forced else "  (replace)"
    if change.reason:
        note += f"  ({change.reason})"
    lines = []
    if change.action is Action.UPDATE or change.action.is_replace:
        for f in change.fields:
            mark = (paint("  # forces replacement", "31") if f.forces_replacement
                    else paint("  # restarts the guest", "33") if f.restarts and change.action is Action.UPDATE else "")
            lines.append(f"  {head}  {f.name}: {value(f.before)} → {value(f.after)}{mark}")
    if note or not lines:
        lines.insert(0, f"  {head}{note}")
    return lines


def render_plan(plan: Plan, *, colour: bool = False) -> str:
    paint = _Paint(colour)
    lines: list[str] = []
    if plan.drift:
        lines.append(paint("Drift", "1") + " (changed outside crane since the last apply; the plan below corrects it):")
        for d in plan.drift:
            if d.gone:
                lines.append(f"  {paint('! ' + d.address, '35')}  deleted outside crane")
            for f in d.fields:
                lines.append(f"  {paint('! ' + d.address, '35')}  {f.name}: {value(f.before)} → {value(f.after)}")
        lines.append("")
    changes = [c for c in plan.changes if c.action is not Action.NOOP or c.reason]
    if not changes and not plan.outputs_changed:
        lines.append("No changes. The infrastructure matches the stack.")
        return "\n".join(lines)
    if changes:
        lines.append(f"crane will make these changes to stack {paint(plan.stack, '1')}:")
        for c in changes:
            lines.extend(_change_lines(c, paint))
    if plan.outputs_changed:
        lines.append("Outputs will change: " + ", ".join(sorted(plan.outputs)))
    counts = plan.counts()
    adopted = sum(1 for c in changes if c.action is Action.NOOP)
    lines.append("")
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
                 f"{counts['delete']} to delete" + (f", {adopted} to adopt." if adopted else "."))
    return "\n".join(lines)


class Progress:
    """Apply progress: a line per finished resource with its elapsed time; on a terminal, also a live status
    line (how many are done and which are running) redrawn under them. Plain writes: at 10,000 resources a
    rich-rendered line would cost more than the provider call it reports."""

    _COLOURS = {"failed": "31", "skipped": "33"}

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream = stream
        self.live = live
        self.paint = _Paint(live)
        self.running: dict[str, None] = {}
        self.finished = 0
        self.pending: list[str] = []  # lines not yet written: off a terminal they go out in blocks

    def report(self, event: StepEvent) -> None:
        if event.verb.endswith("ing"):
            self.running[event.address] = None
        else:
            self.running.pop(event.address, None)
            self.finished += 1
            detail = f": {event.detail}" if event.detail else ""
            name = self.paint(event.address, self._COLOURS.get(event.verb, "32"))
            clear = "\033[2K\r" if self.live else ""
            self.pending.append(f"{clear}{name}: {event.verb} ({event.elapsed:.2f}s){detail}\n")
            if self.live or len(self.pending) >= 200:
                self.flush()
        if self.live:
            self.flush()
            names = list(self.running)[:3]
            more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
            self.stream.write(f"\033[2K\r{self.finished} done, {len(self.running)} running: "
                              f"{', '.join(names)}{more}")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.write("".join(self.pending))
        self.pending.clear()

    def finish(self) -> None:
        self.flush()
        if self.live:
            self.stream.write("\033[2K\r")
            self.stream.flush()
