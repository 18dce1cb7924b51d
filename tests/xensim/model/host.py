"""The pool, its hosts and their metrics: memory, CPUs and CPU features.

Each host has a control domain (a running VM record with ``is_control_domain`` true, as on a real pool, holding
``HostSpec.dom0_mib``). ``host.compute_free_memory`` is the host's memory less what its running VMs hold (a VM
holds its ``memory_dynamic_max``: ballooning under pressure is not simulated). ``host.cpu_info`` carries
``features`` (the hex words the VMs see), ``features_hvm``/``features_pv`` (the same, as recent xapi reports them)
and, for a pool with ``cpu_features_settable``, the pre-7.0 keys ``physical_features``, ``maskable`` and
``features_after_reboot`` that ``host.set_cpu_features`` changes (effective after ``backdoor.reboot_host``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.xensim.config import HostSpec
from tests.xensim.errors import XenError
from tests.xensim.registry import message
from tests.xensim.spec import now_stamp

if TYPE_CHECKING:
    from tests.xensim.world import World

MIB = 1024 * 1024


def cpu_info(host: HostSpec, legacy: bool) -> dict[str, str]:
    info = {"cpu_count": str(host.cpus), "socket_count": "2" if host.cpus >= 8 else "1",
            "threads_per_core": "1", "vendor": host.cpu_vendor, "speed": "2000.070", "modelname": host.cpu_model,
            "family": "6", "model": "45", "stepping": "7", "flags": "fpu de tsc msr pae mce cx8 apic sep",
            "features": host.cpu_features, "features_pv": host.cpu_features, "features_hvm": host.cpu_features,
            "features_pv_host": host.cpu_features, "features_hvm_host": host.cpu_features}
    if legacy:
        info.update(physical_features=host.cpu_features, maskable="full", features_after_reboot=host.cpu_features)
    return info


def add_host(w: World, spec: HostSpec, index: int) -> str:
    """A host joining the pool (at build time, or through the backdoor), with its metrics and control domain."""
    from tests.xensim.model.network import add_host_pifs
    from tests.xensim.model.vms import add_control_domain

    metrics = w.store.create("host_metrics", memory_total=spec.memory_mib * MIB, live=True,
                             last_updated=now_stamp())
    ref = w.store.create("host", name_label=spec.name, hostname=spec.name, address=f"192.0.2.{10 + index}",
                         enabled=True, API_version_major=2, API_version_minor=21, API_version_vendor="XenSource",
                         software_version={"product_brand": "XenServer", "product_version": "8.4.0",
                                           "platform_name": "XCP", "xapi": "24.19"},
                         cpu_info=cpu_info(spec, w.config.cpu_features_settable), metrics=metrics,
                         memory_overhead=0, capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_64"],
                         other_config={"cpu_vendor": spec.cpu_vendor})
    add_control_domain(w, ref, spec)
    add_host_pifs(w, ref)
    return ref


def build(w: World) -> None:
    w.pool = w.store.create("pool", name_label=w.config.name)
    for index, host in enumerate(w.config.hosts):
        ref = add_host(w, host, index)
        if index == 0:
            w.master = ref
            w.store.get("pool", w.pool)["master"] = ref


def held_memory(w: World, host: str) -> int:
    """What the running VMs on ``host`` (its control domain included) hold, in bytes."""
    return sum(w.store.get("VM", vm)["memory_dynamic_max"] for vm in w.store.get("host", host)["resident_VMs"])


def free_memory(w: World, host: str) -> int:
    total = w.store.get("host_metrics", w.store.get("host", host)["metrics"])["memory_total"]
    return int(total - held_memory(w, host) - w.store.get("host", host)["memory_overhead"])


@message("host.compute_free_memory")
def compute_free_memory(w: World, session: str, host: str) -> int:
    return free_memory(w, host)


_WORDS = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{8})*$")


@message("host.set_cpu_features")
def set_cpu_features(w: World, session: str, host: str, features: str) -> None:
    """Mask the host's CPU features from its next boot: the words must be as many as the host's and a subset of
    its physical features (else ``INVALID_FEATURE_STRING``)."""
    info = w.store.get("host", host)["cpu_info"]
    physical = info["physical_features"].split("-")
    words = features.split("-")
    if not _WORDS.match(features) or len(words) != len(physical):
        raise XenError("INVALID_FEATURE_STRING", f"expected {len(physical)} words of 8 hex digits")
    if any(int(a, 16) & ~int(b, 16) for a, b in zip(words, physical, strict=True)):
        raise XenError("INVALID_FEATURE_STRING", "features the host does not have")
    info["features_after_reboot"] = features.lower()


@message("host.reset_cpu_features")
def reset_cpu_features(w: World, session: str, host: str) -> None:
    info = w.store.get("host", host)["cpu_info"]
    info["features_after_reboot"] = info["physical_features"]


def reboot(w: World, host: str) -> None:
    """The host comes back with the features set for after its reboot (a legacy pool) and its VMs halted."""
    from tests.xensim.model.vms import force_halt

    record = w.store.get("host", host)
    for vm in list(record["resident_VMs"]):
        if not w.store.get("VM", vm)["is_control_domain"]:
            force_halt(w, vm)
    info = record["cpu_info"]
    if "features_after_reboot" in info:
        for key in ("features", "features_pv", "features_hvm"):
            info[key] = info["features_after_reboot"]
