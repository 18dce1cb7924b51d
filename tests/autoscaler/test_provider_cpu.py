"""ProviderCpu against libvirt's test driver (the sandbox's hypervisor), whose ``dom.info()`` reports its own clock
(gettimeofday, in ns) as every domain's CPU time: one CPU busy all along, so a 2-vCPU guest reads 0.5 and a 1-vCPU
guest 1.0 when the source measures wall time on the same clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from crane_iac.autoscaler.metrics import ProviderCpu
from crane_iac.errors import ProviderError
from crane_iac.objects import Owner
from crane_iac.providers.base import CreateRequest, Provider, UpdateRequest
from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.providers.metrics import CpuTime, MemoryUsage
from crane_iac.scaling import ScalableTier, TierHost
from tests.providers.test_libvirt_sandbox import VM_PROPS


def tier(*names: str) -> ScalableTier:
    return ScalableTier("appdomain.shop", "appdomain.shop/web.size", len(names), len(names), 1, 8,
                        tuple(TierHost(f"appdomain.shop/vm.{n}", "vm", n) for n in names), {"signal": "cpu"})


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LibvirtProvider]:
    provider = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    provider.create(CreateRequest("vm", "two", {**VM_PROPS, "vcpus": 2}, Owner("s", "vm.two")))
    provider.create(CreateRequest("vm", "one", {**VM_PROPS, "vcpus": 1}, Owner("s", "vm.one")))
    provider.create(CreateRequest("vm", "off", {**VM_PROPS, "running": False}, Owner("s", "vm.off")))
    try:
        yield provider
    finally:
        provider.close()


def test_the_provider_reads_cpu_time_and_vcpus_of_running_guests_only(sandbox: LibvirtProvider) -> None:
    before = time.time()
    reading = sandbox.cpu_time("vm", "two")
    assert isinstance(reading, CpuTime) and reading.vcpus == 2
    assert before - 1 <= reading.seconds <= time.time() + 1  # the test driver's clock
    assert sandbox.cpu_time("vm", "off") is None
    assert sandbox.cpu_time("network", "two") is None
    with pytest.raises(ProviderError, match=r"reading the CPU time of vm 'nowhere' failed"):
        sandbox.cpu_time("vm", "nowhere")


class DriverClock:
    """The sandbox, read through, and the test driver's own clock injected as the source's: the CPU time it last
    reported (it reports its clock as every domain's). Wall time and CPU time then come from one clock at one
    moment, so a utilisation is exact however little time passed between two readings: no sleep, no tolerance
    for a busy machine."""

    def __init__(self, sandbox: LibvirtProvider) -> None:
        self.sandbox = sandbox
        self.now = 0.0

    def cpu_time(self, kind: str, physical: str) -> CpuTime | None:
        reading = self.sandbox.cpu_time(kind, physical)
        if reading is not None:
            self.now = reading.seconds
        return reading

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:  # the rest of GuestMetrics
        return self.sandbox.memory_usage(kind, physical)

    def source(self, readings: dict[tuple[str, str], tuple[CpuTime, float]] | None = None) -> ProviderCpu:
        return ProviderCpu(lambda _endpoint: cast(Provider, self), readings, clock=lambda: self.now)


def test_two_readings_make_a_utilisation_per_vcpu_and_the_first_period_has_none(sandbox: LibvirtProvider) -> None:
    driver = DriverClock(sandbox)
    source = driver.source()
    first = source.read(tier("two", "one", "off", "nowhere"), 1000.0)
    assert first == []  # one reading each: missing, honestly
    second = {s.host: s for s in source.read(tier("two", "one", "off", "nowhere"), 1015.0)}
    assert set(second) == {"two", "one"}  # the stopped and the missing guest have no sample
    assert second["two"].value == pytest.approx(0.5)
    assert second["one"].value == pytest.approx(1.0)
    assert second["two"].at == 1015.0  # stamped with the period, as the other provider source
    # the readings live in the dict the loop keeps: a new source with it carries on
    again = driver.source(source.readings)
    assert {s.host for s in again.read(tier("two"), 1030.0)} == {"two"}


def test_a_guest_restarted_with_other_vcpus_starts_afresh(sandbox: LibvirtProvider) -> None:
    source = DriverClock(sandbox).source()
    source.read(tier("two"), 0.0)
    sandbox.update(UpdateRequest("vm", "two", {**VM_PROPS, "vcpus": 2}, {**VM_PROPS, "vcpus": 3}))
    assert source.read(tier("two"), 15.0) == []  # 2 → 3 vCPUs between the readings: no sample this period
    (sample,) = source.read(tier("two"), 30.0)
    assert sample.value == pytest.approx(1 / 3)
    sandbox.update(UpdateRequest("vm", "two", {**VM_PROPS, "vcpus": 3}, {**VM_PROPS, "vcpus": 3, "running": False}))
    assert source.read(tier("two"), 45.0) == [] and ("default", "two") not in source.readings


def test_guest_metrics_is_an_optional_capability(sandbox: LibvirtProvider, tmp_path: Path) -> None:
    """libvirt reads its guests (GuestMetrics); a provider without the capability gives the autoscaler no samples
    and no error, instead of every provider carrying empty methods."""
    from crane_iac.autoscaler.metrics import ProviderMemory
    from crane_iac.engine.workspace import Workspace
    from crane_iac.providers.base import Provider
    from crane_iac.providers.metrics import GuestMetrics
    from tests.autoscaler.test_sources import stack
    from tests.engine.test_workspace import project

    assert isinstance(sandbox, GuestMetrics)
    assert not hasattr(Provider, "memory_usage") and not hasattr(Provider, "cpu_time")
    (tier,) = Workspace.open(project(tmp_path, stack())).load().tiers
    blind = object()  # no memory_usage, no cpu_time
    assert ProviderMemory(lambda _name: blind).read(tier, 0.0) == []  # type: ignore[arg-type,return-value]
    assert ProviderCpu(lambda _name: blind).read(tier, 0.0) == []  # type: ignore[arg-type,return-value]
