"""The XenAPI provider's change rules: which property changes reach a running guest, wait for a restart, or need a
new object. Pure: no connection."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Reach
from crane_iac.providers.base import changed_fields


def _vcpus(before: Any, after: Any) -> Reach:
    """More vCPUs, up to VCPUs_max, are plugged into the running guest (``VM.set_VCPUs_number_live``); fewer wait
    for a restart."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.RESTART


def _capacity(before: Any, after: Any) -> Reach:
    """A VDI grows in place (``VDI.resize``); it cannot shrink: a smaller one is a new VDI."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.REPLACE


def _leases(before: Any, after: Any) -> Reach:
    """Which subnets come from an address pool: crane's own record (XenServer serves no DHCP to keep to a range)."""
    return Reach.STATE


CHANGE_RULES: dict[str, dict[str, Any]] = {
    "vm": {
        "vcpus": _vcpus,
        # the dynamic range moves on the running guest (its balloon driver follows), within memory_static_max
        "memory_mib": Reach.LIVE,
        "running": Reach.LIVE,
        "autostart": Reach.LIVE,
        "description": Reach.LIVE,
        # VCPUs_max and memory_static_max change on a halted VM only: apply stops and starts it
        "max_vcpus": Reach.RESTART,
        "max_memory_mib": Reach.RESTART,
        # volumes are attached and detached as VBDs (hot-plugged on a running guest with PV drivers)
        "disks": Reach.LIVE,
        # NICs, the template, a half-made clone (``unfinished``): a new VM
    },
    # a VDI grows in place; the rest (its pool, format, what it is made from): a new VDI
    "volume": {"capacity_gib": _capacity},
    # crane's record of a network's subnets and DHCP wish (XenServer holds none of them): rewritten in place
    "network": {"leases": _leases, "ipv4": Reach.LIVE, "ipv6": Reach.LIVE, "dhcp": Reach.LIVE},
}
OUTPUT_FIELDS: dict[str, frozenset[str]] = {"vm": frozenset({"running"})}
#: a VM started, stopped or restarted keeps its UUID and its IPv6 addresses (crane's, from its MACs)
KEPT_OUTPUTS: dict[str, frozenset[str]] = {"vm": frozenset({"uuid", "ipv6", "ipv6_addresses"})}
NOTES = {"vm": {Reach.RESTART: "restarts the guest (XenServer changes this on a halted VM only)"},
         "volume": {Reach.LIVE: "grown in place (VDI.resize)"},
         "network": {Reach.LIVE: "crane's record in the network's other_config; XenServer does not act on it",
                     Reach.STATE: "recorded in state only; nothing in the pool changes"}}


def diff_properties(kind: str, before: dict[str, Any], after: dict[str, Any], *,
                    default_template: str | None = None) -> list[FieldChange]:
    """The XenAPI provider's judgement of a change. A VM's ``template`` left out is the endpoint's
    (``default_template``), on either side; its ``disks`` are a set (the order of VBDs is their userdevices', the
    lowest free one each: not the stack's)."""
    if kind == "vm":
        before, after = _vm_view(before, default_template), _vm_view(after, default_template)
    if before == after:
        return []
    return changed_fields(before, after, CHANGE_RULES.get(kind, {}), OUTPUT_FIELDS.get(kind, frozenset()),
                          NOTES.get(kind))


def _vm_view(p: dict[str, Any], default_template: str | None) -> dict[str, Any]:
    view = dict(p)
    if default_template is not None and not view.get("template"):
        view["template"] = default_template
    if isinstance(view.get("disks"), list):
        view["disks"] = sorted(view["disks"])
    return view


def restarts(kind: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
    return any(f.reach is Reach.RESTART for f in diff_properties(kind, before, after))


def replacement_names(kind: str, physical: str, properties: dict[str, Any] | None = None) -> Iterator[str]:
    """``web`` → ``web-r2`` → ``web-r3`` for a VM made before the old one goes (its own disks, from the template);
    a VM with volumes would need them attached to both at once, a second network would take the old one's VLAN
    tag on the same PIF, and a second volume its name: refused."""
    if kind == "vm" and (properties or {}).get("disks"):
        raise ProviderError("a second VM would need the same volumes attached read-write while the old one runs; "
                            "drop create_before_destroy")
    if kind != "vm":
        raise ProviderError(f"a second {kind} would take the same VLAN tag or name as the one it replaces; drop "
                            "create_before_destroy")
    match = re.fullmatch(r"(.*)-r(\d+)", physical)
    base, generation = (match.group(1), int(match.group(2))) if match else (physical, 1)
    return (f"{base}-r{n}" for n in itertools.count(generation + 1))
