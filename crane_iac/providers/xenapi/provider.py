"""XenApiProvider, a facade: one session (session.py), the bulk read (records.py, reading.py), the rules (rules.py),
the checks (checks.py), and each kind's changes in its module (vms.py, networks.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live
from crane_iac.providers.base import CreateRequest, DeleteRequest, KindHandler, Provider, UpdateRequest
from crane_iac.providers.metrics import CpuTime, MemoryUsage
from crane_iac.providers.xenapi import cpu
from crane_iac.providers.xenapi.checks import Checks
from crane_iac.providers.xenapi.disks import Disks
from crane_iac.providers.xenapi.networks import Networks
from crane_iac.providers.xenapi.reading import read_all
from crane_iac.providers.xenapi.records import Snapshot
from crane_iac.providers.xenapi.rules import KEPT_OUTPUTS, diff_properties, replacement_names
from crane_iac.providers.xenapi.session import Connection, XenApiError
from crane_iac.providers.xenapi.settings import XenApiSettings
from crane_iac.providers.xenapi.tasks import Tasks
from crane_iac.providers.xenapi.vms import Vms

T = TypeVar("T")


class XenApiProvider(Provider):
    """A XenServer or XCP-ng pool, through its master at ``url``."""

    provider_type = "xenapi"
    kinds = ("network", "volume", "vm")

    def __init__(self, url: str, password: str, settings: XenApiSettings) -> None:
        self.url = url
        self.settings = settings
        self.conn = Connection(url, settings.username, password, verify_tls=settings.verify_tls,
                               ca_cert=settings.ca_cert, pinned_sha256=settings.pinned_sha256)
        self.tasks = Tasks(self.conn, limit=settings.max_tasks, timeout=settings.task_timeout)
        self.disks = Disks(self.conn, self.tasks, default_sr=settings.default_sr)
        self.vms = Vms(self.conn, self.tasks, self.disks, template=settings.template, default_sr=settings.default_sr,
                       address_timeout=settings.address_timeout, shutdown_timeout=settings.shutdown_timeout)
        self.networks = Networks(self.conn)
        self.handlers: dict[str, KindHandler] = {"vm": self.vms, "network": self.networks, "volume": self.disks}
        self.checks = Checks(url, template=settings.template, default_sr=settings.default_sr)
        self.cpu_mask: cpu.CpuMask | None = None

    @property
    def reaches_guests(self) -> bool:
        return self.settings.reach_guests

    def read_all(self) -> list[Live]:
        snap = Snapshot.read(self.conn)
        self.checks.learn(snap)
        self.cpu_mask = cpu.common_mask(snap.of("host"))
        return read_all(snap)

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return diff_properties(kind, before, after, default_template=self.settings.template)

    def kept_outputs(self, kind: str) -> frozenset[str]:
        return KEPT_OUTPUTS.get(kind, frozenset())

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        return self.checks.problems(kind, properties)

    def remark(self, kind: str, properties: dict[str, Any]) -> str | None:
        return cpu.remark(self.cpu_mask) if kind == "vm" else None

    def replacement_name(self, kind: str, physical: str, properties: dict[str, Any]) -> str:
        for name in replacement_names(kind, physical, properties):
            if self.vms.find(name) is None:
                return name
        raise AssertionError("unreachable: the generations never end")

    def create(self, request: CreateRequest) -> Live:
        handler = self.handlers[request.kind]
        return self._call("create", request.kind, request.physical, request.progress,
                          lambda: handler.create(request.physical, request.properties, request.owner))

    def update(self, request: UpdateRequest) -> Live:
        handler = self.handlers[request.kind]
        return self._call("update", request.kind, request.physical, request.progress,
                          lambda: handler.update(request.physical, request.before, request.after))

    def delete(self, request: DeleteRequest) -> None:
        handler = self.handlers[request.kind]
        self._call("delete", request.kind, request.physical, request.progress,
                   lambda: handler.delete(request.physical, request.properties))

    def _call(self, verb: str, kind: str, physical: str, progress: Callable[[str], None], fn: Callable[[], T]) -> T:
        """A change, its tasks' progress reported to the request's; XenAPI's refusal becomes a ``ProviderError``
        naming the object."""
        try:
            with self.tasks.reporting(progress):
                return fn()
        except XenApiError as exc:
            raise ProviderError(f"the pool at {self.url} refused to {verb} {kind} {physical!r}: {exc}") from None

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:
        return self.vms.memory_usage(physical) if kind == "vm" else None

    def cpu_time(self, kind: str, physical: str) -> CpuTime | None:
        """XenAPI reports CPU utilisation (VM_metrics.VCPUs_utilisation, RRDs), not cumulative CPU time: none."""
        return None

    def close(self) -> None:
        self.conn.close()

