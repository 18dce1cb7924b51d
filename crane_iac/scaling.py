"""Scaling as a capability: what a component declares about a tier of servers a controller may resize, and the
protocol through which it declares it. The loader collects the tiers of every component that implements
``ScalesTiers``; the autoscaler, the plan and its renderers read them, and know nothing of the component's kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from crane_iac.objects import DEFAULT_ENDPOINT


@dataclass(frozen=True, slots=True)
class TierHost:
    """One server of a scalable tier: its address in the stack, kind and name on its endpoint, and its IP address
    (where its agent answers; None when the component does not know it)."""

    address: str
    kind: str
    physical: str
    #: its number in the tier (web-3: 3), which the tier's members setting lists
    number: int = 0
    #: its address on the tier's network (the agent listens there)
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class ScalableTier:
    """A tier of servers a controller may resize, as a component declares it when the stack loads (an app domain's
    web tier): the durable setting that holds its desired size, the size in effect, its range, its servers, and the
    scaling policy's fields as plain values (the autoscaler builds its ``ScalingPolicy`` from them)."""

    #: the component's address (``appdomain.shop``)
    address: str
    setting: str
    size: int
    declared: int
    min: int
    max: int
    hosts: tuple[TierHost, ...]
    policy: dict[str, Any]
    endpoint: str = DEFAULT_ENDPOINT
    #: the tier's name within its component, as plans show it (``appdomain.shop web: size 3 …``)
    name: str = "web"
    #: the balancer's stats page in CSV (HAProxy's ``;csv``), for the session-rate signal
    stats_url: str | None = None
    #: what every server's address starts with (``appdomain.shop/container.web-``): recorded servers beyond
    #: ``hosts`` (a tier not yet shrunk to its size) are counted by it
    member_prefix: str = ""
    #: the durable setting listing the servers that make up the tier, oldest first (``hosts`` is in that order):
    #: a scale-in that removes a server other than the newest writes it
    members_setting: str = ""
    #: where the autoscaler receives the servers' agents' pushes: the host's address on their network (None: the
    #: servers have no agent to push, or nowhere to push to), and the port of both the receiver and the agents
    agent_listen: str | None = None
    agent_port: int | None = None


@runtime_checkable
class ScalesTiers(Protocol):
    """A component whose tiers a controller may resize (an app domain's web tier, a cluster's workers)."""

    def scalable_tiers(self) -> list[ScalableTier]:
        """Its tiers as the stack declares them now (the size in effect read from the tier's setting)."""
