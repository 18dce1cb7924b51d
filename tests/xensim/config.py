"""What a simulated pool is made of: :class:`PoolSpec` and its parts, and the clock the simulator reads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

#: The feature words of a recent Intel host, as xapi shows them in ``host.cpu_info["features"]``.
DEFAULT_FEATURES = ("17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000-0c000000")


@dataclass(frozen=True)
class HostSpec:
    """One host: its name, memory, CPU count and CPU (vendor, model name and feature words, hex words joined by
    ``-``). Hosts bought at different times have different feature words: a pool of them is heterogeneous."""
    name: str
    memory_mib: int = 65536
    cpus: int = 16
    cpu_features: str = DEFAULT_FEATURES
    cpu_vendor: str = "GenuineIntel"
    cpu_model: str = "Intel(R) Xeon(R) CPU E5-2650 0 @ 2.00GHz"
    dom0_mib: int = 1024


@dataclass(frozen=True)
class SRSpec:
    """A storage repository: its name, size and type (``ext``: thin, local to the first host)."""
    name: str
    size_gib: int = 1024
    type: str = "ext"


@dataclass(frozen=True)
class TemplateSpec:
    """A VM template: as XenServer's own ("Other install media" family), its disks described in
    ``other_config["disks"]`` for ``VM.provision`` to create; with ``premade_disk`` it instead already has a VDI
    (a template made from an installed VM)."""
    name: str
    disk_gib: int = 10
    memory_mib: int = 1024
    vcpus: int = 1
    premade_disk: bool = False


@dataclass(frozen=True)
class PoolSpec:
    """A pool. ``PoolSpec()`` alone is a usable one-host pool with local storage, one external network and one
    Debian template. ``guest_address_delay`` is how long after ``VM.start`` the guest tools report an address
    (seconds on the simulator's clock); ``task_duration`` how long each async task runs (real seconds, in two
    halves so a client sees progress); ``task_workers`` how many tasks run at once; ``session_ttl`` (clock
    seconds since last use) expires idle sessions when set; ``cpu_features_settable`` answers the removed
    ``host.set_cpu_features`` as a pool before XenServer 7.0 (Dundee) did."""
    hosts: list[HostSpec] = field(default_factory=lambda: [HostSpec("xs1")])
    srs: list[str | SRSpec] = field(default_factory=lambda: ["Local storage"])
    networks: list[str] = field(default_factory=lambda: ["Pool-wide network associated with eth0"])
    templates: list[str | TemplateSpec] = field(default_factory=lambda: ["Debian Bookworm 12"])
    guest_address_delay: float = 0.2
    task_duration: float = 0.02
    task_workers: int = 8
    session_ttl: float | None = None
    cpu_features_settable: bool = False
    name: str = "pool0"

    def sr_specs(self) -> list[SRSpec]:
        return [s if isinstance(s, SRSpec) else SRSpec(s) for s in self.srs]

    def template_specs(self) -> list[TemplateSpec]:
        return [t if isinstance(t, TemplateSpec) else TemplateSpec(t) for t in self.templates]


class Clock(Protocol):
    def now(self) -> float: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when a test says so (``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
