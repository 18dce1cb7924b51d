"""An endpoint as the engine sees it: a hypervisor provider and its companions, behind the one Provider contract.

A companion serves kinds that are not hypervisor objects but belong with the endpoint's guests: configuration runs
and the SSH key they use (``ansible``), later address leases and MPI jobs. Each call goes to the provider that
serves the kind; the planner and apply engine see one provider per endpoint and never learn the difference.
"""

from __future__ import annotations

from typing import Any

from crane_iac.objects import FieldChange, Live
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest
from crane_iac.providers.listing import PartialListing
from crane_iac.providers.metrics import CpuTime, GuestMetrics, MemoryUsage


class Endpoint(Provider):
    """``hypervisor`` serves its own kinds; each companion serves those of its kinds the hypervisor does not."""

    def __init__(self, hypervisor: Provider, companions: list[Provider]) -> None:
        self.hypervisor = hypervisor
        self.companions = companions
        self.by_kind: dict[str, Provider] = dict.fromkeys(hypervisor.kinds, hypervisor)
        for companion in companions:
            for kind in companion.kinds:
                self.by_kind.setdefault(kind, companion)
        self.kinds = tuple(self.by_kind)
        self.max_parallelism = hypervisor.max_parallelism
        self._listed = frozenset(kind for kind, provider in self.by_kind.items() if kind in provider.listed_kinds)
        self._partly_listed: dict[str, PartialListing] = {
            kind: provider for kind, provider in self.by_kind.items() if isinstance(provider, PartialListing)}

    def provider_of(self, kind: str) -> Provider:
        """The provider that serves ``kind`` (the hypervisor for a kind no one serves: it refuses it itself)."""
        return self.by_kind.get(kind, self.hypervisor)

    @property
    def listed_kinds(self) -> frozenset[str]:
        return self._listed

    def listed(self, kind: str, properties: dict[str, Any]) -> bool:
        """Whether the last ``read_all`` listed every object like this recorded one, so that its absence means it
        was deleted: its kind is listed, and the provider serving it does not say it was out of sight this time
        (``PartialListing``: a volume of a stopped pool)."""
        if kind not in self._listed:
            return False
        provider = self._partly_listed.get(kind)
        return provider is None or not provider.unlisted(kind, properties)

    def unreadable(self, kind: str) -> frozenset[str]:
        return self.provider_of(kind).unreadable(kind)

    @property
    def reaches_guests(self) -> bool:
        return self.hypervisor.reaches_guests

    def read_all(self) -> list[Live]:
        lives = self.hypervisor.read_all()
        for companion in self.companions:
            lives.extend(live for live in companion.read_all() if self.by_kind.get(live.kind) is companion)
        return lives

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return self.provider_of(kind).diff(kind, before, after)

    def kept_outputs(self, kind: str) -> frozenset[str]:
        return self.provider_of(kind).kept_outputs(kind)

    def create(self, request: CreateRequest) -> Live:
        return self.provider_of(request.kind).create(request)

    def update(self, request: UpdateRequest) -> Live:
        return self.provider_of(request.kind).update(request)

    def delete(self, request: DeleteRequest) -> None:
        self.provider_of(request.kind).delete(request)

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        return self.provider_of(kind).check(kind, properties)

    def replacement_name(self, kind: str, physical: str, properties: dict[str, Any]) -> str:
        return self.provider_of(kind).replacement_name(kind, physical, properties)

    def planned_elsewhere(self, kind: str, properties: dict[str, Any]) -> None:
        self.provider_of(kind).planned_elsewhere(kind, properties)

    def remark(self, kind: str, properties: dict[str, Any]) -> str | None:
        return self.provider_of(kind).remark(kind, properties)

    def warnings(self, kind: str, properties: dict[str, Any]) -> list[str]:
        return self.provider_of(kind).warnings(kind, properties)

    # GuestMetrics, answered by the provider serving the kind where it has the capability (else no reading)

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:
        provider = self.provider_of(kind)
        return provider.memory_usage(kind, physical) if isinstance(provider, GuestMetrics) else None

    def cpu_time(self, kind: str, physical: str) -> CpuTime | None:
        provider = self.provider_of(kind)
        return provider.cpu_time(kind, physical) if isinstance(provider, GuestMetrics) else None

    def checkpoint(self) -> None:
        self.hypervisor.checkpoint()
        for companion in self.companions:
            companion.checkpoint()

    def close(self) -> None:
        try:
            for companion in self.companions:
                companion.close()
        finally:
            self.hypervisor.close()
