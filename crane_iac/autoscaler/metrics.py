"""Where the autoscaler's samples come from: a source gives, for a tier's servers, timestamped readings of the
policy's signal (a fraction for memory and CPU, sessions per second for the session rate).

* ``ProviderMemory``: the endpoint's own reading of each guest (the container's cgroup, a VM's balloon), through
  the same ``memory_usage`` the provider serves;
* ``ProviderCpu``: each guest's CPU utilisation from two of the endpoint's readings of its CPU time (``cpu_time``):
  Δcpu / (Δwall × vCPUs); a guest's first period has no sample (missing), nor does one restarted in between;
* ``AgentMetrics`` (agents.py): the agent on each web server, pushing when its value moves and pulled otherwise;
* ``SimulatedMetrics``: values a test or the demo writes into ``.crane/simulated-metrics.json``
  (``{"shop-web-1": 0.9, ...}``): the embedded sandbox runs nothing whose memory could be read;
* ``HAProxySessions``: each server's session rate from the balancer's stats page (HAProxy's ``rate`` column).

A server a source has no reading for is left out: the decision counts it as missing, never as idle or busy.
"""

from __future__ import annotations

import csv
import http.client
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from crane_iac.autoscaler.decision import Sample
from crane_iac.errors import CraneError, ProviderError
from crane_iac.providers.base import Provider
from crane_iac.providers.metrics import CpuTime, GuestMetrics
from crane_iac.scaling import ScalableTier

#: the file the simulated source reads, in the project's .crane/
SIMULATED = "simulated-metrics.json"
#: the sandbox's sessions in flight per server, for a scale-in's choice
SIMULATED_SESSIONS = "simulated-sessions.json"


class MetricsSource(Protocol):
    """Readings of a tier's servers' signal at ``now``."""

    def read(self, tier: ScalableTier, now: float) -> list[Sample]: ...


class ProviderMemory:
    """Each server's memory use as a fraction of what it has, read from its endpoint (``memory_usage``)."""

    def __init__(self, provider_of: Callable[[str], Provider]) -> None:
        self.provider_of = provider_of

    def read(self, tier: ScalableTier, now: float) -> list[Sample]:
        provider = self.provider_of(tier.endpoint)
        if not isinstance(provider, GuestMetrics):  # an endpoint that cannot read its guests: no samples
            return []
        samples = []
        for host in tier.hosts:
            try:
                usage = provider.memory_usage(host.kind, host.physical)
            except ProviderError:
                continue  # gone or unreadable this period: missing
            if usage is not None and usage.total_mib > 0:
                samples.append(Sample(host.physical, usage.fraction, now))
        return samples


class ProviderCpu:
    """Each server's CPU utilisation since the last period, from its endpoint's readings of its CPU time.

    ``readings`` (server → (reading, wall clock)) is what the last period read: the loop keeps it across periods
    while each period's endpoints are new. Wall time is this ``clock``'s at each reading, not the period's ``now``
    (the reads of a period take time). On a vCPU count that changed or CPU time that went back (a restart), the
    reading starts afresh: no sample that period. A container LXC does not confine to its vCPUs may read above 1."""

    def __init__(self, provider_of: Callable[[str], Provider],
                 readings: dict[tuple[str, str], tuple[CpuTime, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider_of = provider_of
        self.readings = {} if readings is None else readings
        self.clock = clock

    def read(self, tier: ScalableTier, now: float) -> list[Sample]:
        provider = self.provider_of(tier.endpoint)
        if not isinstance(provider, GuestMetrics):
            return []
        samples = []
        for host in tier.hosts:
            key = (tier.endpoint, host.physical)
            try:
                reading = provider.cpu_time(host.kind, host.physical)
            except ProviderError:
                reading = None
            if reading is None:
                self.readings.pop(key, None)  # gone, stopped or unreadable: missing, and afresh next time
                continue
            wall = self.clock()
            last = self.readings.get(key)
            self.readings[key] = (reading, wall)
            if last is None:
                continue
            before, then = last
            if wall <= then or reading.seconds < before.seconds or reading.vcpus != before.vcpus:
                continue
            samples.append(Sample(host.physical, (reading.seconds - before.seconds) / ((wall - then) * reading.vcpus),
                                  now))
        return samples


class SimulatedMetrics:
    """Values from ``<state dir>/simulated-metrics.json``: ``{server: value}`` or ``{server: [value, at]}``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SIMULATED

    def read(self, tier: ScalableTier, now: float) -> list[Sample]:
        try:
            values = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise CraneError(f"{self.path}: not a JSON object of server → value ({exc})") from None
        samples = []
        for host in tier.hosts:
            found = values.get(host.physical) if isinstance(values, dict) else None
            if isinstance(found, list) and len(found) == 2:
                samples.append(Sample(host.physical, float(found[0]), float(found[1])))
            elif isinstance(found, (int, float)) and not isinstance(found, bool):
                samples.append(Sample(host.physical, float(found), now))
        return samples

    def sessions(self, tier: ScalableTier) -> dict[str, int] | None:
        """Each server's sessions in flight from ``<state dir>/simulated-sessions.json`` (``{server: count}``), as
        a scale-in's choice reads the balancer's; None (no balancer to read) without the file."""
        path = self.path.with_name(SIMULATED_SESSIONS)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CraneError(f"{path}: not a JSON object of server → sessions ({exc})") from None
        if not isinstance(values, dict):
            raise CraneError(f"{path}: not a JSON object of server → sessions")
        return {h.physical: int(values.get(h.physical) or 0) for h in tier.hosts}


class HAProxySessions:
    """Each server's session rate (sessions per second over the last second) from the balancer's stats CSV."""

    def read(self, tier: ScalableTier, now: float) -> list[Sample]:
        if tier.stats_url is None:
            return []
        return [Sample(name, float(row.get("rate") or 0), now) for name, row in _stats(tier).items()]


def current_sessions(tier: ScalableTier) -> dict[str, int] | None:
    """Each server's sessions in flight (HAProxy's ``scur``), or None when the balancer cannot be read."""
    try:
        return {name: int(row.get("scur") or 0) for name, row in _stats(tier).items()}
    except (CraneError, ValueError, csv.Error):
        return None


def _stats(tier: ScalableTier) -> dict[str, dict[str, str]]:
    """The balancer's stats rows of the tier's servers, by server name."""
    if tier.stats_url is None:
        raise CraneError(f"{tier.address} has no balancer stats to read")
    try:
        with urllib.request.urlopen(tier.stats_url, timeout=3) as response:
            text = response.read().decode()
    except (OSError, http.client.HTTPException) as exc:  # HAProxy reloading mid-answer: a truncated body
        raise CraneError(f"the balancer's stats of {tier.address} ({tier.stats_url}) cannot be read: "
                         f"{exc or type(exc).__name__}") from None
    names = {h.physical for h in tier.hosts}
    try:
        return {row["svname"]: row for row in csv.DictReader(text.lstrip("# ").splitlines())
                if row.get("svname") in names}
    except csv.Error as exc:
        raise CraneError(f"the balancer's stats of {tier.address} ({tier.stats_url}) are not CSV: {exc}") from None
