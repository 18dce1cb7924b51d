"""The libvirt provider's own rules for the resources it serves (Terraform's ValidateResourceConfig): libvirt's and
QEMU's limits and conventions, which are no part of what a VM, a network or a container is. The registry finds
``validate_resource`` beside the provider's opener; crane calls it on every resource of a libvirt endpoint whenever
a stack loads (``crane validate`` included: no connection is needed), and reports each problem with the
resource's file:line and address.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: the vCPUs QEMU's pc machine holds (the test driver takes more; a real host refuses them)
MAX_VCPUS = 255
#: the network modes whose bridge carries a VLAN tag in libvirt's network XML
VLAN_MODES = ("openvswitch",)
#: the storage pool types crane defines through libvirt
POOL_TYPES = ("dir",)
#: what libvirt 9.0 writes unescaped into a domain's XML when it formats an ``<initenv>`` value (and then cannot
#: read back)
UNSAFE_ENV = re.compile(r"[<&]")


def validate_resource(kind: str, properties: dict[str, Any]) -> list[str]:
    """What libvirt would refuse (or garble) in a resource of ``kind`` with these properties; [] when nothing."""
    rule = _RULES.get(kind)
    return rule(properties) if rule is not None else []


def _vcpus(p: dict[str, Any]) -> list[str]:
    for key in ("vcpus", "max_vcpus"):
        value = p.get(key)
        if isinstance(value, int) and value > MAX_VCPUS:
            return [f"{key}: must be at most {MAX_VCPUS}, got {value} (QEMU's pc machine holds at most "
                    f"{MAX_VCPUS} vCPUs on libvirt)"]
    return []


def _vm(p: dict[str, Any]) -> list[str]:
    problems = _vcpus(p)
    if p.get("template") is not None:
        problems.append(f"template={p['template']!r}: libvirt makes a VM from its volumes, not from a template; give "
                        f"volumes=[Volume(..., template={p['template']!r})] (a VM template of the host's library: "
                        "crane template build) or Volume(..., base=<the golden image>), and leave the VM's template "
                        "out")
    return problems


def _network(p: dict[str, Any]) -> list[str]:
    problems = []
    ipv6 = p.get("ipv6")
    if ipv6 and "ipv6" in p.get("leases", ()) and not str(ipv6).endswith("/64"):
        # a pool's IPv6 subnet is announced for SLAAC (xml._ip_blocks), which forms addresses in a /64 only
        problems.append(f"router advertisements for SLAAC need a /64 subnet, not {ipv6!r}: give the IPv6 pool "
                        "subnet_prefixlen=64")
    elif ipv6 and p.get("dhcp") and not str(ipv6).endswith("/64"):
        # libvirt's dnsmasq refuses a DHCPv6 range on any other prefix length (the test driver accepts it)
        problems.append(f"DHCPv6 needs a /64 subnet, not {ipv6!r}: use a /64 or set dhcp=False")
    if p.get("mode") == "nat" and not p.get("ipv4"):
        # libvirt 9.0 masquerades IPv4 only, and refuses a nat network with no IPv4 address (both drivers)
        problems.append("mode='nat' needs an ipv4 subnet to masquerade (libvirt masquerades IPv4 only); add "
                        "ipv4=… or use mode='isolated'")
    mode = p.get("mode")
    if p.get("vlan") is not None and mode not in VLAN_MODES:
        # imported here: the resource models (the package it is in) are imported while the endpoints connect
        from crane_iac.resources.messages import with_article

        problems.append(f"a VLAN tag needs mode='openvswitch'; libvirt cannot tag {with_article(repr(mode))} network")
    return problems


def _container(p: dict[str, Any]) -> list[str]:
    problems = _vcpus(p)
    env = p.get("init_env") or {}
    unsafe = sorted(name for name, text in env.items() if isinstance(text, str) and UNSAFE_ENV.search(text))
    if unsafe:
        problems.append(f"init_env {', '.join(unsafe)}: libvirt 9.0 writes these values into its XML unescaped, "
                        "so '<' and '&' break it; pass such a value in a file (under a mount) instead")
    return problems


def _pool(p: dict[str, Any]) -> list[str]:
    kind = p.get("type", "dir")
    if kind not in POOL_TYPES:
        return [f"type: libvirt pools crane makes are of type {' or '.join(repr(t) for t in POOL_TYPES)}, "
                f"not {kind!r}"]
    return []


_RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "vm": _vm, "network": _network, "container": _container, "pool": _pool,
}
