"""An optional capability of a provider: reading its running guests' usage (the autoscaler's signal).

A provider that can implements ``GuestMetrics`` (two methods, checked with ``isinstance``); one that cannot leaves
them out, and the autoscaler finds no readings there. An endpoint answers for the provider serving each kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """A guest's memory as its balloon driver reports it, in MiB."""

    #: what the guest could not hand to a new program without swapping: ``total`` minus libvirt's ``usable``
    #: (MemAvailable, which counts reclaimable page cache as free)
    used_mib: float
    #: the memory the guest sees (libvirt's ``available``, the guest's MemTotal)
    total_mib: float
    #: libvirt's ``unused`` (MemFree), for reference
    unused_mib: float

    @property
    def fraction(self) -> float:
        return self.used_mib / self.total_mib if self.total_mib else 0.0


@dataclass(frozen=True, slots=True)
class CpuTime:
    """A running guest's CPU time so far, as the hypervisor counts it (every vCPU and the guest's own threads),
    and the vCPUs it has: two readings make a utilisation, Δseconds / (Δwall × vcpus)."""

    seconds: float
    vcpus: int


@runtime_checkable
class GuestMetrics(Protocol):
    """What a provider that can read its guests' usage answers."""

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:
        """The running guest's memory use, or None while the hypervisor has no reading (stopped, no balloon)."""

    def cpu_time(self, kind: str, physical: str) -> CpuTime | None:
        """The running guest's cumulative CPU time, or None where the hypervisor cannot say (stopped)."""
