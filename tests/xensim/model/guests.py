"""What the guest tools report: ``VM_guest_metrics`` appear ``PoolSpec.guest_address_delay`` seconds (on the
simulator's clock) after a VM starts, with an address for every VIF in ``networks`` (``<device>/ip``,
``<device>/ipv4/0`` and ``<device>/ipv6/0``), derived from the VIF's MAC (IPv4 ``10.x.y.z`` from its last three
octets, IPv6 the EUI-64 address in ``fd00::/64``), so a VM's address is stable across restarts. They go away
when the VM halts. Guests on internal networks get addresses too: the simulator has no DHCP to leave out.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from tests.xensim.spec import NULL_REF, now_stamp

if TYPE_CHECKING:
    from tests.xensim.world import World


def addresses(mac: str) -> tuple[str, str]:
    octets = [int(o, 16) for o in mac.split(":")]
    ipv4 = f"10.{octets[3]}.{octets[4]}.{octets[5]}"
    eui = [octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]]
    ipv6 = ipaddress.IPv6Address(bytes([0xFD] + [0] * 7 + eui))
    return ipv4, str(ipv6)


def booted(w: World, vm: str) -> None:
    w.guest_due[vm] = w.clock.now() + w.config.guest_address_delay


def halted(w: World, vm: str) -> None:
    w.guest_due.pop(vm, None)
    record = w.store.get("VM", vm)
    if w.store.exists("VM_guest_metrics", record["guest_metrics"]):
        w.store.destroy("VM_guest_metrics", record["guest_metrics"])
    record["guest_metrics"] = NULL_REF


def publish_due(w: World, now: float) -> None:
    for vm, due in list(w.guest_due.items()):
        if now < due:
            continue
        del w.guest_due[vm]
        if not w.store.exists("VM", vm) or w.store.get("VM", vm)["power_state"] != "Running":
            continue
        networks = {}
        for vif in w.store.get("VM", vm)["VIFs"]:
            record = w.store.get("VIF", vif)
            ipv4, ipv6 = addresses(record["MAC"])
            device = record["device"]
            networks.update({f"{device}/ip": ipv4, f"{device}/ipv4/0": ipv4, f"{device}/ipv6/0": ipv6})
        ref = w.store.create("VM_guest_metrics", networks=networks, PV_drivers_detected=True, live=True,
                             os_version={"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian",
                                         "major": "12", "uname": "6.1.0-18-amd64"},
                             PV_drivers_version={"major": "9", "minor": "3", "micro": "3", "build": "1"},
                             last_updated=now_stamp())
        w.store.get("VM", vm)["guest_metrics"] = ref
