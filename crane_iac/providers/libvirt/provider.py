"""LibvirtProvider, a facade: picks the host once (host.py, sandbox.py), reads with reading.py, judges with rules.py,
checks with checks.py, and hands each kind's create/update/delete to its module (domains, containers, networks,
volumes, ...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import libvirt

from crane_iac.errors import CraneError, ProviderError
from crane_iac.objects import FieldChange, Live
from crane_iac.providers.base import CreateRequest, DeleteRequest, KindHandler, Provider, UpdateRequest
from crane_iac.providers.libvirt.addresses import GuestAddresses
from crane_iac.providers.libvirt.checks import Checks
from crane_iac.providers.libvirt.cloudinit import Seeds
from crane_iac.providers.libvirt.containers import Containers
from crane_iac.providers.libvirt.copies import pool_dir
from crane_iac.providers.libvirt.domains import Domains
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.networks import Networks
from crane_iac.providers.libvirt.pools import Pools
from crane_iac.providers.libvirt.reading import read_all
from crane_iac.providers.libvirt.rules import KEPT_OUTPUTS, UNREADABLE, diff_properties, replacement_names
from crane_iac.providers.libvirt.sandbox import open_host
from crane_iac.providers.libvirt.sharing import KINDS
from crane_iac.providers.libvirt.snapshots import Snapshots, library_pool
from crane_iac.providers.libvirt.volumes import Volumes
from crane_iac.providers.metrics import CpuTime, MemoryUsage
from crane_iac.templates.library import Library

__all__ = ["LibvirtProvider", "diff_properties"]

T = TypeVar("T")


class LibvirtProvider(Provider):
    """A libvirt host (``uri``), or with ``uri=None`` the embedded sandbox kept under ``sandbox_dir``."""

    provider_type = "libvirt"
    kinds = KINDS
    #: read_all lists every pool, network, domain and the volumes of every running pool (a seed is one of them);
    #: those of a stopped pool it cannot list (``unlisted``)
    listed_kinds = frozenset(kinds)

    def __init__(
        self,
        uri: str | None,
        *,
        sandbox_dir: Path,
        mutating: bool,
        domain_type: str | None = None,
        stats_period: int = 2,
        lock_timeout: float = 0.0,
        address_timeout: float = 120.0,
        shutdown_timeout: float = 30.0,
        reach_guests: bool | None = None,
        host: Host | None = None,
    ) -> None:
        """``host``: the connection already opened for ``uri`` or the sandbox (the opener opens it before importing
        this module); else it is opened here."""
        self.host: Host = host or open_host(uri, sandbox_dir=sandbox_dir, mutating=mutating,
                                            lock_timeout=lock_timeout)
        self.conn = self.host.conn  # for callers that act as a second libvirt client (tests)
        self.uri = self.host.uri
        self.mutating = mutating
        self.max_parallelism = self.host.max_parallelism
        self.addresses = GuestAddresses(self.host, timeout=address_timeout)
        self.checks = Checks(self.host)
        self.domains = Domains(self.host, self.addresses, stats_period=stats_period, shutdown_timeout=shutdown_timeout,
                               domain_type=domain_type or ("test" if self.host.test_driver else "qemu"))
        #: where crane makes the host's template library (the pool crane-templates) when it has none: the
        #: project's .crane/templates
        self.library_dir = next((d for d in (sandbox_dir, *sandbox_dir.parents) if d.name == ".crane"),
                                sandbox_dir) / "templates"
        self.containers = Containers(self.host, shutdown_timeout=shutdown_timeout,
                                     domain_type="test" if self.host.test_driver else "lxc",
                                     library_dir=self.library_dir)
        self.handlers: dict[str, KindHandler] = {
            "pool": Pools(self.host), "network": Networks(self.host, self.addresses),
            "volume": Volumes(self.host, self._made_library), "cloudinit": Seeds(self.host), "vm": self.domains,
            "container": self.containers,
            "snapshot": Snapshots(self.host, self.library_dir)}
        self._reach_guests = reach_guests
        #: the pools the last read_all found stopped, whose volumes it could not list
        self._stopped_pools: frozenset[str] = frozenset()

    @property
    def reaches_guests(self) -> bool:
        """Whether the machine running crane reaches the guests' addresses: a real host it runs on (a libvirt URI
        without a remote hostname), unless the endpoint's ``reach_guests`` says otherwise; never the sandbox, whose
        guests run nowhere."""
        if self.host.test_driver:
            return False
        return self.host.local if self._reach_guests is None else self._reach_guests

    def read_all(self) -> list[Live]:
        try:
            lives = read_all(self.host, self.addresses)
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading {self.uri} failed: {exc.get_error_message()}") from None
        self.checks.learn(lives)
        self._stopped_pools = frozenset(live.physical for live in lives
                                        if live.kind == "pool" and not live.properties["active"])
        return lives

    def unlisted(self, kind: str, properties: dict[str, Any]) -> bool:
        """A volume or seed of a pool the last read found stopped: libvirt cannot list it, and the plan that starts
        the pool finds it there again (``PartialListing``)."""
        return kind in ("volume", "cloudinit", "snapshot") and properties.get("pool") in self._stopped_pools

    def unreadable(self, kind: str) -> frozenset[str]:
        return UNREADABLE.get(kind, frozenset())

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return diff_properties(kind, before, after)

    def kept_outputs(self, kind: str) -> frozenset[str]:
        return KEPT_OUTPUTS.get(kind, frozenset())

    def replacement_name(self, kind: str, physical: str, properties: dict[str, Any]) -> str:
        """The first free generation name (rules.replacement_names) for a create_before_destroy replacement."""
        for name in replacement_names(kind, physical, properties):
            if self.handlers[kind].read(name, properties) is None:
                return name
        raise AssertionError("unreachable: the generations never end")

    def _made_library(self) -> Library:
        """The host's template library, its pool made at the project's .crane/templates when it has none (apply)."""
        return Library(pool_dir(library_pool(self.host.conn, self.library_dir)))

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        problems = self.checks.problems(kind, properties)
        if kind == "container" and properties.get("template"):
            problems.extend(self._template_problems(properties))
        if kind == "volume" and properties.get("template"):
            try:
                self.containers.library().disk(properties["template"])
            except CraneError as exc:
                problems.append(str(exc))
        return problems

    def _template_problems(self, p: dict[str, Any]) -> list[str]:
        """A container's template: in the host's library, a container's layer, built on the container's root."""
        try:
            _, base = self.containers.library().layers(p["template"])
        except CraneError as exc:
            return [str(exc)]
        if base != p["root"]:
            return [f"template {p['template']!r} was built on {base!r}, not on the container's root {p['root']!r}; "
                    f"give root={base!r}"]
        return []

    def warnings(self, kind: str, properties: dict[str, Any]) -> list[str]:
        """A container or a volume on a template whose lineage was built on a base that has changed since (a stale
        template): the bases are read where crane runs, so only for a host crane runs on (the sandbox included)."""
        if kind not in ("container", "volume") or not properties.get("template") or not self.host.local:
            return []
        try:
            stale = self.containers.library().stale(properties["template"])
        except CraneError:
            return []  # check() reports a missing template
        return [str(stale)] if stale is not None else []

    def planned_elsewhere(self, kind: str, properties: dict[str, Any]) -> None:
        self.checks.planned(kind, properties)

    def create(self, request: CreateRequest) -> Live:
        handler = self.handlers[request.kind]
        return self._call("create", request.kind, request.physical,
                          lambda: handler.create(request.physical, request.properties, request.owner))

    def update(self, request: UpdateRequest) -> Live:
        handler = self.handlers[request.kind]
        return self._call("update", request.kind, request.physical,
                          lambda: handler.update(request.physical, request.before, request.after))

    def delete(self, request: DeleteRequest) -> None:
        def run() -> None:
            try:
                self.handlers[request.kind].delete(request.physical, request.properties)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in NOT_FOUND:
                    raise

        self._call("delete", request.kind, request.physical, run)

    def _call(self, verb: str, kind: str, physical: str, fn: Callable[[], T]) -> T:
        """Run a mutation, telling the host first; libvirt's refusal becomes a ``ProviderError`` naming the object."""
        self.host.changing(kind, physical)
        try:
            return fn()
        except libvirt.libvirtError as exc:
            raise ProviderError(f"libvirt refused to {verb} {kind} {physical!r}: {exc.get_error_message()}") from None

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:
        if kind == "container":
            return self.containers.memory_usage(physical)
        return self.domains.memory_usage(physical) if kind == "vm" else None

    def cpu_time(self, kind: str, physical: str) -> CpuTime | None:
        """``dom.info()``'s CPU time and vCPUs: for QEMU the guest process's, for LXC the container's cpuacct
        cgroup. The test driver reports its own clock as every domain's CPU time (one CPU busy all along)."""
        if kind not in ("vm", "container"):
            return None
        try:
            dom = self.host.conn.lookupByName(physical)
            if not dom.isActive():
                return None
            _, _, _, vcpus, cpu_ns = dom.info()
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading the CPU time of {kind} {physical!r} failed: {exc.get_error_message()}") \
                from None
        return CpuTime(seconds=cpu_ns / 1e9, vcpus=int(vcpus)) if vcpus > 0 else None

    def checkpoint(self) -> None:
        self.host.checkpoint()

    def close(self) -> None:
        try:
            self.checkpoint()
        finally:
            self.host.close()
