"""The pool's VMs and networks as crane's properties, comparable to what a stack declares (so that a stack read
back as made plans no change), with their owners: the bulk read (``read_all``) and the read of one object after a
change (``read_vm``, ``read_network``)."""

from __future__ import annotations

from typing import Any

from crane_iac.objects import Live
from crane_iac.providers.xenapi.disks import vm_disks, vm_snapshot, volume_lives
from crane_iac.providers.xenapi.records import (
    AUTO_POWERON,
    MIB,
    NIC_IPV4_KEY,
    NIC_IPV6_KEY,
    TEMPLATE_KEY,
    Snapshot,
    is_guest,
    network_record,
    owner_of,
)
from crane_iac.providers.xenapi.session import Connection

NULL = "OpaqueRef:NULL"


def read_all(snap: Snapshot) -> list[Live]:
    """Every guest and every network of the pool (a network of the pool's own, such as a PIF's, unowned)."""
    lives = [network_live(ref, snap) for ref in snap.of("network")]
    # a clone crane began (named crane-making:<stack>/<address>, its owner written or not) is listed as its owner's,
    # unfinished: the next plan replaces it where the stack still declares its address, and deletes it where not
    lives.extend(vm_live(ref, snap) for ref, rec in snap.of("VM").items() if is_guest(rec))
    lives.extend(volume_lives(snap))
    return lives


def read_vm(conn: Connection, ref: str) -> Live:
    """One VM, with its VIFs, their networks and its guest metrics (a few calls, not the whole pool)."""
    vm = conn.call("VM.get_record", ref)
    vifs = {r: conn.call("VIF.get_record", r) for r in vm["VIFs"]}
    networks = {v["network"]: conn.call("network.get_record", v["network"]) for v in vifs.values()}
    metrics = {}
    if vm.get("guest_metrics", NULL) != NULL:
        metrics[vm["guest_metrics"]] = conn.call("VM_guest_metrics.get_record", vm["guest_metrics"])
    return vm_live(ref, Snapshot({"VM": {ref: vm}, "VIF": vifs, "network": networks, "VM_guest_metrics": metrics,
                                  **vm_snapshot(conn, vm)}))


def read_network(conn: Connection, ref: str) -> Live:
    net = conn.call("network.get_record", ref)
    pifs = {r: conn.call("PIF.get_record", r) for r in net["PIFs"]}
    return network_live(ref, Snapshot({"network": {ref: net}, "PIF": pifs}))


def vm_live(ref: str, snap: Snapshot) -> Live:
    vm = snap.of("VM")[ref]
    owner = owner_of(vm)
    vifs = sorted((snap.of("VIF")[r] for r in vm["VIFs"] if r in snap.of("VIF")), key=lambda v: int(v["device"]))
    nics = []
    for vif in vifs:
        net = snap.of("network").get(vif["network"])
        nic: dict[str, Any] = {"network": net["name_label"] if net else None, "mac": vif["MAC"].lower()}
        other = vif.get("other_config") or {}
        if other.get(NIC_IPV4_KEY):
            nic["ipv4"] = other[NIC_IPV4_KEY]
        if other.get(NIC_IPV6_KEY):
            nic["ipv6"] = other[NIC_IPV6_KEY]
        nics.append(nic)
    running = vm["power_state"] == "Running"
    props: dict[str, Any] = {
        "vcpus": int(vm["VCPUs_at_startup"]),
        "max_vcpus": int(vm["VCPUs_max"]),
        "memory_mib": int(vm["memory_dynamic_max"]) // MIB,
        "max_memory_mib": int(vm["memory_static_max"]) // MIB,
        "nics": nics,
        "disks": vm_disks(vm, snap),
        "running": running,
        "autostart": (vm.get("other_config") or {}).get(AUTO_POWERON) == "true",
        "description": vm.get("name_description") or None,
        "kernel": None,
        "initrd": None,
        "cmdline": None,
        "cloud_init": None,
    }
    template = (vm.get("other_config") or {}).get(TEMPLATE_KEY)
    if template:
        props["template"] = template
    if vm.get("is_a_template"):
        # a clone crane began and did not finish (a crash before provisioning): not the VM the stack declares
        props["unfinished"] = True
    metrics = snap.of("VM_guest_metrics").get(vm.get("guest_metrics", NULL)) or {}
    addresses = [guest_address(metrics.get("networks") or {}, vif["device"]) if running else None for vif in vifs]
    return Live("vm", vm["name_label"], props, {"uuid": vm["uuid"], **nic_outputs(addresses, nics)},
                owner.stack if owner else None, owner.address if owner else None)


def guest_address(networks: dict[str, str], device: str) -> str | None:
    """The IPv4 address guest tools report for the VIF of ``device`` (``0/ip`` or ``0/ipv4/0``), or None."""
    return networks.get(f"{device}/ipv4/0") or networks.get(f"{device}/ip") or None


def nic_outputs(ipv4: list[str | None], nics: list[dict[str, Any]]) -> dict[str, Any]:
    """The address outputs of a VM, as the libvirt provider has them (its addresses.nic_outputs): ``ipv4`` and
    ``ipv6`` the first NIC's, ``addresses`` and ``ipv6_addresses`` one per NIC."""
    ipv6 = [nic.get("ipv6") for nic in nics]
    return {"ipv4": ipv4[0] if ipv4 else None, "addresses": ipv4,
            "ipv6": ipv6[0] if ipv6 else None, "ipv6_addresses": ipv6}


def network_live(ref: str, snap: Snapshot) -> Live:
    net = snap.of("network")[ref]
    other = net.get("other_config") or {}
    own = network_record(other)
    pifs = [snap.of("PIF")[r] for r in net.get("PIFs", ()) if r in snap.of("PIF")]
    vlan_pifs = [p for p in pifs if int(p.get("VLAN", -1)) >= 0]
    if vlan_pifs:
        mode, bridge, vlan = own.get("mode", "bridge"), vlan_pifs[0]["device"], int(vlan_pifs[0]["VLAN"])
    elif pifs:
        mode, bridge, vlan = "bridge", pifs[0]["device"], None
    else:
        mode, bridge, vlan = own.get("mode", "isolated"), None, None
    props: dict[str, Any] = {"mode": mode, "bridge": bridge, "vlan": vlan, "ipv4": own.get("ipv4"),
                             "ipv6": own.get("ipv6"), "dhcp": own.get("dhcp", False)}
    if own.get("leases"):
        props["leases"] = own["leases"]
    owner = owner_of(net)
    return Live("network", net["name_label"], props, {"uuid": net["uuid"], "bridge_name": net.get("bridge") or None},
                owner.stack if owner else None, owner.address if owner else None)
