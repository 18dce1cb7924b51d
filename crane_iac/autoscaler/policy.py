"""ScalingPolicy: how the autoscaler sizes one app domain's web tier, checked when the stack loads.

The signal is a utilisation in [0, 1] per web server: memory (the default) or CPU as the server reports it, or
HAProxy's session rate per server divided by ``capacity`` (sessions per second one server carries). ``upper`` is the
line the tier's average must stay under (the SLO line): the tier scales out before it, once its average is above
``target`` plus ``tolerance`` (``out_line``, at most upper), when its trend says it will be within ``tolerance`` of
upper by the time a new server counts, or when one server is above ``hot``; a scale-out sizes the tier to
``target``. The tier scales in below ``lower``, and from within [lower, upper] while it is larger than ``target``
needs; the rules are crane_iac.autoscaler.decision's. Problems are reported all at once, in crane's words
(``lower (0.8) must be below upper (0.6)``), as a ``DiagnosticsError``.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from crane_iac.errors import Diagnostic, DiagnosticsError

Signal = Literal["memory", "cpu", "sessions"]

#: pydantic's bound errors in crane's words (the same as the stack's resources use)
_BOUNDS = {"greater_than_equal": "must be at least {ge:g}", "greater_than": "must be greater than {gt:g}",
           "less_than_equal": "must be at most {le:g}", "less_than": "must be less than {lt:g}"}


class ScalingPolicy(BaseModel):
    """``ScalingPolicy(upper=0.8, lower=0.4)``: when and by how much an app domain's web tier changes size.

    Times are seconds. ``min_fresh`` is the fraction of the tier's warmed-up servers that must have a fresh
    sample before the tier may scale in (at least one sample, always); with fewer it never scales in. ``target``
    (default: midway between lower and upper) is the average a scale-out sizes the tier to, and the one a tier
    larger than its load needs is brought back to. ``tolerance`` is how near a line counts as on it, as the HPA's:
    the tier scales out once its average is beyond it above ``target`` (``out_line``: target × (1 + tolerance), at
    most ``upper``; 0.66 with the defaults) unless its trend keeps it within it of ``upper`` a warmup ahead, the
    trend's early scale-out fires within it of ``upper``, a tier whose
    new servers are still warming scales out again only beyond it above ``target``, and a scale-in from within the
    band starts below ``shed_line`` (midway between lower and target less tolerance) and stops beyond it below
    ``target``. ``trend`` is how many seconds of readings the trend is
    fitted over (0: no early scale-out). ``hot`` (default: midway between upper and 1, ``hot_line``; set, it must be
    above upper) is the reading above which one warmed-up server scales the tier out on its own, to
    ceil(N × its reading / upper). A scale-out adds at least ``step`` servers and at most ``max_step``; without
    ``max_step`` (the default) at most as many as the tier has, but at least 4, as the HPA (``most_added``).
    ``cooldown`` (300 s) follows a scale-out, ``scale_in_cooldown`` (300 s) a scale-in; a scale-in goes to the
    highest size the last ``stabilisation`` seconds asked for, in one action. ``scale_in_to_target=False`` keeps
    the tier from scaling in above ``lower`` (the issue's two-threshold rule; a spike's servers may then stay).

    ``source`` says where memory and CPU come from (the session rate always comes from HAProxy): ``"agent"`` (the
    default), crane's agent on each web server (listening on ``agent_port``), which pushes to the autoscaler (on
    the host's address on the domain's network, same port) as soon as its value moves and is pulled when it has
    not pushed for ``pull_after`` seconds: fast reaction without polling every server every second (proven in real
    LXC containers by tests/real/test_autoscale.py; a VM's image needs python3 for it); or ``"provider"``, the
    endpoint's own reading of each guest (a container's cgroup, a VM's balloon; CPU from two readings of the
    guest's CPU time), read once a period. On the sandbox both read the simulated values.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    signal: Signal = "memory"
    upper: float = Field(default=0.8, gt=0, le=1)
    lower: float = Field(default=0.4, ge=0, lt=1)
    step: int = Field(default=1, ge=1)
    max_step: int | None = Field(default=None, ge=1)
    cooldown: float = Field(default=300.0, ge=0)
    stabilisation: float = Field(default=300.0, ge=0)
    warmup: float = Field(default=60.0, ge=0)
    stale_after: float = Field(default=60.0, gt=0)
    min_fresh: float = Field(default=0.5, gt=0, le=1)
    capacity: float | None = Field(default=None, gt=0)
    target: float | None = Field(default=None, gt=0, lt=1)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    trend: float = Field(default=300.0, ge=0)
    scale_in_cooldown: float = Field(default=300.0, ge=0)
    scale_in_to_target: bool = True
    hot: float | None = Field(default=None, gt=0)
    source: Literal["agent", "provider"] = "agent"
    agent_port: int = Field(default=9465, ge=1, le=65535)
    pull_after: float = Field(default=10.0, gt=0)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DiagnosticsError([Diagnostic(f"ScalingPolicy: {_message(e)}") for e in exc.errors()]) from None
        problems = self._order()
        if problems:
            raise DiagnosticsError([Diagnostic(f"ScalingPolicy: {p}") for p in problems])

    def _order(self) -> list[str]:
        """The problems between fields, every one of them."""
        problems = []
        if self.lower >= self.upper:
            problems.append(f"lower ({self.lower:g}) must be below upper ({self.upper:g})")
        if self.target is not None and not self.lower < self.target < self.upper:
            problems.append(f"target ({self.target:g}) must be between lower ({self.lower:g}) and upper "
                            f"({self.upper:g})")
        if self.hot is not None and self.hot <= self.upper:
            problems.append(f"hot ({self.hot:g}) must be above upper ({self.upper:g}): a server above it is hotter "
                            "than the tier's SLO line")
        if self.max_step is not None and self.max_step < self.step:
            problems.append(f"max_step ({self.max_step}) must be at least step ({self.step})")
        if self.signal == "sessions" and self.capacity is None:
            problems.append("signal 'sessions' needs capacity: the sessions per second one web server carries")
        if self.signal != "sessions" and self.capacity is not None:
            problems.append(f"capacity is only for signal 'sessions' (signal {self.signal!r} is already a fraction)")
        if self.source == "agent" and self.pull_after >= self.stale_after:
            problems.append(f"pull_after ({self.pull_after:g}) must be below stale_after ({self.stale_after:g}): a "
                            "server that has not pushed is pulled before its last sample goes stale")
        return problems

    @property
    def sizing(self) -> float:
        """The average a scale-out sizes the tier to: ``target``, or midway between lower and upper."""
        return self.target if self.target is not None else (self.lower + self.upper) / 2

    def most_added(self, size: int) -> int:
        """The most servers one scale-out adds to a tier of ``size``: ``max_step``, or as the HPA (at most double
        the tier, at least 4) when it is not set."""
        if self.max_step is not None:
            return self.max_step
        return size if size > 4 else 4

    @property
    def out_line(self) -> float:
        """The average above which the tier scales out: ``target`` plus ``tolerance`` (the HPA's line), at most
        ``upper``."""
        line = self.sizing * (1 + self.tolerance)
        return line if line < self.upper else self.upper

    @property
    def shed_line(self) -> float:
        """The average below which a tier scales in to its target (``scale_in_to_target``): midway between
        ``lower`` and ``target`` less ``tolerance`` (0.47 with the defaults); the scale-in still stops at target
        less tolerance."""
        return (self.lower + self.sizing * (1 - self.tolerance)) / 2

    @property
    def hot_line(self) -> float:
        """The reading above which one server scales the tier out: ``hot``, or midway between upper and 1."""
        return self.hot if self.hot is not None else (self.upper + 1) / 2

    @property
    def reads_agents(self) -> bool:
        """Whether the servers' agents are the source: memory or CPU from ``source="agent"`` (the session rate is
        HAProxy's, so a sessions policy installs no agent)."""
        return self.source == "agent" and self.signal != "sessions"

    def utilisation(self, value: float) -> float:
        """A sample's value as a utilisation: a session rate over ``capacity``; memory and CPU as they are."""
        return value / self.capacity if self.capacity is not None else value


def _message(err: ErrorDetails) -> str:
    """``field: what is wrong, got <value>`` for one pydantic error."""
    where = ".".join(str(part) for part in err["loc"])
    kind, ctx, value = err["type"], err.get("ctx", {}), err["input"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(where, list(ScalingPolicy.model_fields), n=1)
        text = f"unknown field; did you mean {close[0]}?" if close else \
            f"unknown field; ScalingPolicy takes {', '.join(ScalingPolicy.model_fields)}"
    elif kind == "literal_error":
        text = f"expected one of {ctx['expected']}, got {value!r}"
    elif kind in _BOUNDS:
        text = f"{_BOUNDS[kind].format(**ctx)}, got {value!r}"
    elif kind.endswith("_type"):
        text = f"expected {'an' if kind[0] in 'aeiou' else 'a'} {kind.removesuffix('_type')}, " \
               f"got {type(value).__name__} {value!r}"
    else:
        text = err["msg"]
    return f"{where}: {text}" if where else text
