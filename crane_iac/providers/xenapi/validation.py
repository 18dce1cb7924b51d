"""The XenAPI provider's own rules for the resources it serves (Terraform's ValidateResourceConfig): what a
XenServer pool cannot do with a VM, a volume or a network as the stack declares it, found whenever a stack loads,
without a connection. The registry finds ``validate_resource`` beside the opener."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: XenServer 8's limits for a guest (the HVM maximum, and the largest memory it supports for one)
MAX_VCPUS = 64
MAX_MEMORY_MIB = 1536 * 1024
#: network modes a XenServer pool has: an internal network (no PIF), or a VLAN on a PIF (``bridge`` names its device)
INTERNAL_MODES = ("isolated",)
VLAN_MODES = ("bridge", "openvswitch")


def validate_resource(kind: str, properties: dict[str, Any]) -> list[str]:
    """What XenServer would refuse in a resource of ``kind`` with these properties; [] when nothing."""
    rule = _RULES.get(kind)
    return rule(properties) if rule is not None else []


def _vm(p: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("vcpus", "max_vcpus"):
        value = p.get(key)
        if isinstance(value, int) and value > MAX_VCPUS:
            problems.append(f"{key}: must be at most {MAX_VCPUS}, got {value} (XenServer's limit for one guest)")
    for key in ("memory_mib", "max_memory_mib"):
        value = p.get(key)
        if isinstance(value, int) and value > MAX_MEMORY_MIB:
            problems.append(f"{key}: must be at most {MAX_MEMORY_MIB} MiB (1.5 TiB, XenServer's limit for one "
                            f"guest), got {value}")
    for key in ("kernel", "initrd", "cmdline"):
        if p.get(key):
            problems.append(f"{key}: a VM on XenServer boots from its template's disks; direct kernel boot is not "
                            "supported by crane's XenAPI provider (leave kernel, initrd and cmdline out)")
            break
    if p.get("cloud_init"):
        problems.append("cloud_init: a VM on XenServer takes its configuration from its template; cloud-init seeds "
                        "are not supported by crane's XenAPI provider")
    if len(p.get("nics") or ()) > 7:
        problems.append(f"networks: a VM on XenServer has at most 7 NICs, got {len(p['nics'])}")
    return problems


def _volume(p: dict[str, Any]) -> list[str]:
    """An empty VDI is all crane makes on XenServer: a VM's system disk comes from its template."""
    problems = []
    if p.get("base"):
        problems.append("base: a VDI on XenServer has no backing image crane can name; make the VM from a template "
                        "(VM(..., template=<its name>)) for its system disk, and give extra volumes only "
                        "capacity_gib")
    for key, what in (("source", "an uploaded image"), ("clone", "a copy of another volume"),
                      ("template", "a disk on crane's template library (a libvirt host's)")):
        if p.get(key):
            problems.append(f"{key}: crane's XenAPI provider makes empty VDIs only, not {what}; leave {key} out "
                            "(a VM's system disk comes from its template)")
    if p.get("format") in ("raw", "dir"):
        problems.append(f"format={p['format']!r}: the SR decides a VDI's format on XenServer, and a directory is "
                        "no VDI; leave format out")
    return problems


def _network(p: dict[str, Any]) -> list[str]:
    mode, vlan = p.get("mode"), p.get("vlan")
    if isinstance(vlan, list):
        return [f"vlan={vlan}: a XenServer VLAN network carries one tag; a trunk of tags is not supported"]
    if mode in INTERNAL_MODES:
        if vlan is not None:
            return ["a VLAN tag needs mode='bridge' and bridge=<the PIF's device, such as 'eth1'>: XenServer puts a "
                    "VLAN on a physical interface"]
        return []
    if mode in VLAN_MODES:
        if vlan is None:
            return [f"mode={mode!r} without a vlan: XenServer's networks of physical interfaces exist already; give "
                    "vlan=<tag> for a VLAN network on the PIF named by bridge=, or use mode='isolated'"]
        return []
    return [f"mode={mode!r}: a XenServer pool has no {mode} networks; use mode='isolated' (an internal network, no "
            "PIF) or mode='bridge' with bridge=<the PIF's device> and vlan=<tag> (a VLAN network)"]


_RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {"vm": _vm, "network": _network, "volume": _volume}
