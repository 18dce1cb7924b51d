"""A VM's memory and VCPU settings, and the RRD data sources ``VM.query_data_source`` reads (see model/vms.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.xensim.errors import XenError
from tests.xensim.registry import message

if TYPE_CHECKING:
    from tests.xensim.world import World

CONSTRAINT = "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max"


def _halted(w: World, vm: str) -> None:
    state = w.store.get("VM", vm)["power_state"]
    if state != "Halted":
        raise XenError("VM_BAD_POWER_STATE", vm, "halted", state.lower())


def _limits(w: World, vm: str, **values: int) -> None:
    record = w.store.get("VM", vm)
    new = {k: values.get(k, record[k]) for k in
           ("memory_static_min", "memory_dynamic_min", "memory_dynamic_max", "memory_static_max")}
    ordered = list(new.values())
    if not 0 < ordered[0] <= ordered[1] <= ordered[2] <= ordered[3]:
        raise XenError("MEMORY_CONSTRAINT_VIOLATION", CONSTRAINT)
    record.update(new)
    record["memory_target"] = new["memory_dynamic_max"]
    if record["power_state"] != "Halted":
        w.store.get("VM_metrics", record["metrics"])["memory_actual"] = new["memory_dynamic_max"]


@message("VM.set_memory_limits", asyncable=True)
def set_memory_limits(w: World, session: str, vm: str, static_min: int, static_max: int, dynamic_min: int,
                      dynamic_max: int) -> None:
    _halted(w, vm)
    _limits(w, vm, memory_static_min=static_min, memory_static_max=static_max, memory_dynamic_min=dynamic_min,
            memory_dynamic_max=dynamic_max)


@message("VM.set_memory_static_range", asyncable=True)
def set_memory_static_range(w: World, session: str, vm: str, low: int, high: int) -> None:
    _halted(w, vm)
    _limits(w, vm, memory_static_min=low, memory_static_max=high)


@message("VM.set_memory_dynamic_range", asyncable=True)
def set_memory_dynamic_range(w: World, session: str, vm: str, low: int, high: int) -> None:
    _limits(w, vm, memory_dynamic_min=low, memory_dynamic_max=high)


@message("VM.set_memory", asyncable=True)
def set_memory(w: World, session: str, vm: str, value: int) -> None:
    """Static max and the dynamic range all set to ``value`` (the VM must be halted)."""
    _halted(w, vm)
    low = min(w.store.get("VM", vm)["memory_static_min"], value)
    _limits(w, vm, memory_static_min=low, memory_static_max=value, memory_dynamic_min=value,
            memory_dynamic_max=value)


def _vcpus(max_: int, at_startup: int) -> None:
    if not 0 < at_startup <= max_:
        raise XenError("INVALID_VALUE", "VCPUs", "VCPU values must satisfy: 0 < VCPUs_at_startup <= VCPUs_max")


@message("VM.set_VCPUs_max")
def set_vcpus_max(w: World, session: str, vm: str, value: int) -> None:
    _halted(w, vm)
    record = w.store.get("VM", vm)
    _vcpus(value, record["VCPUs_at_startup"])
    record["VCPUs_max"] = value


@message("VM.set_VCPUs_at_startup")
def set_vcpus_at_startup(w: World, session: str, vm: str, value: int) -> None:
    _halted(w, vm)
    record = w.store.get("VM", vm)
    _vcpus(record["VCPUs_max"], value)
    record["VCPUs_at_startup"] = value


@message("VM.query_data_source")
def query_data_source(w: World, session: str, vm: str, name: str) -> float:
    """``memory`` and ``memory_target`` (bytes) for a running VM; ``memory_internal_free`` (KiB, as xapi's RRDs
    report it) only once its guest tools report (``VM.guest_metrics`` set): 40% of its memory unless the backdoor
    set it. Anything else (or the free memory of a guest without tools) is ``INTERNAL_ERROR``, as xapi says
    for a data source it does not have."""
    record = w.store.get("VM", vm)
    if record["power_state"] != "Running":
        raise XenError("VM_BAD_POWER_STATE", vm, "running", record["power_state"].lower())
    actual = w.store.get("VM_metrics", record["metrics"])["memory_actual"]
    if name == "memory":
        return float(actual)
    if name == "memory_target":
        return float(record["memory_target"])
    if name == "memory_internal_free" and w.store.exists("VM_guest_metrics", record["guest_metrics"]):
        return float(w.guest_free_kib.get(vm, int(actual * 0.4) // 1024))
    raise XenError("INTERNAL_ERROR", f"data source {name} not found for VM {record['uuid']}")
