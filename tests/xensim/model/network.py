"""Networks, PIFs, VLANs and VIFs.

Each network of ``PoolSpec.networks`` has a physical PIF ``eth<i>`` on every host (eth0 is the management
interface); a network made with ``network.create`` is internal (no PIF). ``pool.create_VLAN_from_PIF`` makes a
VLAN PIF on every host's PIF with the same device, after checking the tag (0-4094, ``VLAN_TAG_INVALID``), that the
PIF is not itself a VLAN (``PIF_IS_VLAN``) and that no VLAN on that device has the tag (``PIF_VLAN_EXISTS``).
``VIF.create`` checks the device is free on the VM (``DEVICE_ALREADY_EXISTS``) and the MAC well-formed
(``MAC_INVALID``); an empty MAC is generated. Like xapi, it does not check a MAC for uniqueness across the pool.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from tests.xensim.errors import XenError
from tests.xensim.registry import message
from tests.xensim.spec import NULL_REF, decode_create_record

if TYPE_CHECKING:
    from tests.xensim.world import World

_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def random_mac() -> str:
    """A locally administered unicast MAC, as xapi generates for a VIF created with an empty one."""
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def build(w: World) -> None:
    for index, name in enumerate(w.config.networks):
        w.store.create("network", name_label=name, bridge=f"xenbr{index}", MTU=1500, managed=True)
    for host in w.store.all("host"):
        add_host_pifs(w, host)


def add_host_pifs(w: World, host: str) -> None:
    """A physical PIF eth<i> on ``host`` for each network of the pool's spec (once they exist)."""
    networks = [w.store.find("network", name_label=name) for name in w.config.networks]
    for index, found in enumerate(networks):
        device = f"eth{index}"
        if not found or w.store.find("PIF", host=host, device=device, VLAN=-1):
            continue
        pif = w.store.create("PIF", device=device, network=found[0], host=host, MAC=random_mac(), MTU=1500,
                             VLAN=-1, physical=True, currently_attached=True, management=index == 0,
                             ip_configuration_mode="DHCP" if index == 0 else "None")
        w.store.link("network", found[0], "PIFs", pif)
        w.store.link("host", host, "PIFs", pif)


@message("network.create")
def network_create(w: World, session: str, args: dict[str, Any]) -> str:
    values = decode_create_record("network", args)
    if not values.get("bridge"):
        values["bridge"] = f"xapi{len(w.store.all('network'))}"
    return w.store.create("network", **values)


@message("network.destroy")
def network_destroy(w: World, session: str, ref: str) -> None:
    record = w.store.get("network", ref)
    if record["VIFs"]:
        raise XenError("NETWORK_CONTAINS_VIF", *record["VIFs"])
    if record["PIFs"]:
        raise XenError("NETWORK_CONTAINS_PIF", *record["PIFs"])
    w.store.destroy("network", ref)


def _vlan(w: World, pif: str, tag: int, network: str) -> str:
    """One VLAN on ``pif`` (a physical PIF): the VLAN object and its untagged PIF on ``network``."""
    if not 0 <= tag <= 4094:
        raise XenError("VLAN_TAG_INVALID", tag)
    tagged = w.store.get("PIF", pif)
    if tagged["VLAN"] != -1:
        raise XenError("PIF_IS_VLAN", pif)
    for vlan in tagged["VLAN_slave_of"]:
        if w.store.get("VLAN", vlan)["tag"] == tag:
            raise XenError("PIF_VLAN_EXISTS", pif)
    untagged = w.store.create("PIF", device=tagged["device"], network=network, host=tagged["host"],
                              MAC=tagged["MAC"], MTU=w.store.get("network", network)["MTU"], VLAN=tag,
                              physical=False, currently_attached=True)
    vlan = w.store.create("VLAN", tagged_PIF=pif, untagged_PIF=untagged, tag=tag)
    w.store.get("PIF", untagged)["VLAN_master_of"] = vlan
    w.store.link("PIF", pif, "VLAN_slave_of", vlan)
    w.store.link("network", network, "PIFs", untagged)
    w.store.link("host", tagged["host"], "PIFs", untagged)
    return vlan


@message("pool.create_VLAN_from_PIF", asyncable=True)
def create_vlan_from_pif(w: World, session: str, pif: str, network: str, tag: int) -> list[str]:
    device = w.store.get("PIF", pif)["device"]
    if w.store.get("PIF", pif)["VLAN"] != -1:
        raise XenError("PIF_IS_VLAN", pif)
    peers = [p for p in w.store.find("PIF", device=device, VLAN=-1)]
    for peer in peers:  # check every host before changing any
        if not 0 <= tag <= 4094:
            raise XenError("VLAN_TAG_INVALID", tag)
        for vlan in w.store.get("PIF", peer)["VLAN_slave_of"]:
            if w.store.get("VLAN", vlan)["tag"] == tag:
                raise XenError("PIF_VLAN_EXISTS", peer)
    return [w.store.get("VLAN", _vlan(w, peer, tag, network))["untagged_PIF"] for peer in peers]


@message("VLAN.create", asyncable=True)
def vlan_create(w: World, session: str, tagged_pif: str, tag: int, network: str) -> str:
    return _vlan(w, tagged_pif, tag, network)


@message("VLAN.destroy", asyncable=True)
def vlan_destroy(w: World, session: str, ref: str) -> None:
    vlan = w.store.get("VLAN", ref)
    untagged = w.store.destroy("PIF", vlan["untagged_PIF"])
    w.store.unlink("network", untagged["network"], "PIFs", vlan["untagged_PIF"])
    w.store.unlink("host", untagged["host"], "PIFs", vlan["untagged_PIF"])
    w.store.unlink("PIF", vlan["tagged_PIF"], "VLAN_slave_of", ref)
    w.store.destroy("VLAN", ref)


def add_vif(w: World, vm: str, network: str, device: str, mac: str, **values: Any) -> str:
    if not mac:
        mac = random_mac()
        values["MAC_autogenerated"] = True
    if not _MAC.match(mac):
        raise XenError("MAC_INVALID", mac)
    for vif in w.store.get("VM", vm)["VIFs"]:
        if w.store.get("VIF", vif)["device"] == device:
            raise XenError("DEVICE_ALREADY_EXISTS", device)
    ref = w.store.create("VIF", VM=vm, network=network, device=device, MAC=mac.lower(), **values)
    w.store.link("VM", vm, "VIFs", ref)
    w.store.link("network", network, "VIFs", ref)
    return ref


@message("VIF.create", asyncable=True)
def vif_create(w: World, session: str, args: dict[str, Any]) -> str:
    values = decode_create_record("VIF", args)
    w.store.get("VM", values["VM"])
    w.store.get("network", values["network"])
    vm, network, device, mac = (values.pop(k) for k in ("VM", "network", "device", "MAC"))
    return add_vif(w, vm, network, device, mac, **values)


@message("VIF.destroy", asyncable=True)
def vif_destroy(w: World, session: str, ref: str) -> None:
    vif = w.store.get("VIF", ref)
    if vif["currently_attached"]:
        raise XenError("OPERATION_NOT_ALLOWED", "VIF is attached: unplug it or halt the VM first")
    w.store.destroy("VIF", ref)
    w.store.unlink("VM", vif["VM"], "VIFs", ref)
    if vif["network"] != NULL_REF:
        w.store.unlink("network", vif["network"], "VIFs", ref)
