"""VMs as libvirt domains, with crane's owner in their metadata: define, change live or by a new definition, start,
stop, undefine, and read a running guest's memory."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.addresses import GuestAddresses, nic_networks
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.rules import restarts
from crane_iac.providers.metrics import MemoryUsage


class Domains:
    """The ``vm`` kind."""

    def __init__(self, host: Host, addresses: GuestAddresses, *, domain_type: str, stats_period: int,
                 shutdown_timeout: float) -> None:
        self.host = host
        self.addresses = addresses
        self.domain_type = domain_type
        self.stats_period = stats_period
        self.shutdown_timeout = shutdown_timeout

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        xml = lx.render_domain(physical, p, owner, domain_type=self.domain_type, disks=self._disks(p),
                               stats_period=self.stats_period)
        reserve(self.host.conn, p["nics"])  # before the guest boots and asks
        dom = self.host.conn.defineXML(xml)
        if p["autostart"]:
            self.host.set_autostart(dom, physical, True)
        if p["running"]:
            self._start(dom, p)
        self.host.domain_changed(dom, bool(p["running"]))
        # what was defined is what a read returns (read_all parses to the same shape; drift would show if not)
        return Live("vm", physical, dict(p), self.addresses.after_change(dom.UUIDString(), p, wait=True),
                    owner.stack, owner.address)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        dom = lookup_domain(self.host.conn, physical)
        return None if dom is None else self._read(dom, wait=False)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        dom = self.host.conn.lookupByName(physical)
        if restarts("vm", before, after):
            return self._redefine(dom, physical, after)
        # the persistent definition first, then the running domain (some drivers refuse both in one call)
        scopes = [libvirt.VIR_DOMAIN_AFFECT_CONFIG]
        if dom.isActive():
            scopes.append(libvirt.VIR_DOMAIN_AFFECT_LIVE)
        for flags in scopes:
            if after["memory_mib"] != before.get("memory_mib"):
                dom.setMemoryFlags(after["memory_mib"] * 1024, flags)
            if after["vcpus"] != before.get("vcpus"):
                dom.setVcpusFlags(after["vcpus"], flags)
            if after["description"] != before.get("description"):
                dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, after["description"] or None, None, None,
                                flags)
        if after["autostart"] != before.get("autostart"):
            self.host.set_autostart(dom, physical, after["autostart"])
        started = after["running"] and not dom.isActive()
        if started:
            self._start(dom, after)
        elif not after["running"] and dom.isActive():
            self._stop(dom)
        return self._read(dom, wait=started)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        reserve(self.host.conn, p.get("nics") or [], remove=True)
        dom = self.host.conn.lookupByName(physical)
        if dom.isActive():
            dom.destroy()
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in NOT_FOUND:
                raise
            dom.undefine()
        self.host.domain_gone(physical)

    def memory_usage(self, physical: str) -> MemoryUsage | None:
        """The guest's memory as its balloon driver reports it; None while it is stopped or has not reported."""
        try:
            dom = self.host.conn.lookupByName(physical)
            stats = dom.memoryStats() if dom.isActive() else {}
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading the memory of vm {physical!r} failed: {exc.get_error_message()}") from None
        if "available" not in stats or "usable" not in stats:
            return None  # the guest's balloon driver has not reported yet
        return MemoryUsage(used_mib=(stats["available"] - stats["usable"]) / 1024,
                           total_mib=stats["available"] / 1024, unused_mib=stats.get("unused", 0) / 1024)

    def _read(self, dom: Any, *, wait: bool) -> Live:
        """The domain as libvirt reports it; ``wait``: for the addresses of a guest just started."""
        xml = dom.XMLDesc(self.host.domain_xml_flags)
        root = ET.fromstring(xml)
        active = bool(dom.isActive())
        self.host.domain_changed(dom, active, xml)
        owner = lx.owner_of(root)
        props = lx.parse_domain(root, running=active, autostart=bool(dom.autostart()), volume_by_path={})
        self.addresses.nic_facts(nic_networks(props)).fill(props)  # as the bulk read has them (reading.py)
        return Live("vm", dom.name(), props, self.addresses.after_change(root.findtext("uuid"), props, wait=wait),
                    owner.stack if owner else None, owner.address if owner else None)

    def _disks(self, p: dict[str, Any]) -> list[dict[str, str]]:
        """The template's disks: each ``pool/volume`` with its format and target device."""
        disks = []
        for index, ref in enumerate(p["disks"]):
            pool_name, _, vol_name = ref.partition("/")
            vol = self.host.conn.storagePoolLookupByName(pool_name).storageVolLookupByName(vol_name)
            fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
            disks.append({"pool": pool_name, "volume": vol_name, "format": fmt.get("type", "raw") if fmt is not None
                          else "raw", "target": "vd" + chr(ord("a") + index)})
        return disks

    def _redefine(self, dom: Any, physical: str, after: dict[str, Any]) -> Live:
        """A change libvirt cannot make live: stop the guest, define the domain anew (same UUID, same owner), and
        start it again if it should run (after a crash in between, the next plan starts it)."""
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        owner = lx.owner_of(root) or Owner("", "")
        if dom.isActive():
            self._stop(dom)
        xml = lx.render_domain(physical, after, owner, domain_type=root.get("type") or self.domain_type,
                               disks=self._disks(after), stats_period=self.stats_period, uuid=dom.UUIDString())
        dom = self.host.conn.defineXML(xml)
        self.host.set_autostart(dom, physical, after["autostart"])
        if after["running"]:
            self._start(dom, after)
        return self._read(dom, wait=bool(after["running"]))

    def _start(self, dom: Any, props: dict[str, Any]) -> None:
        """Start the guest, first noting the leases its MACs hold (see addresses.py)."""
        self.addresses.before_start(props)
        dom.create()

    def _stop(self, dom: Any) -> None:
        shut_down(dom, self.shutdown_timeout)


def shut_down(dom: Any, timeout: float) -> None:
    """Ask the domain to shut down (a guest's ACPI button, a container's init a SIGTERM); power it off if it has not
    within ``timeout`` seconds."""
    try:
        dom.shutdown()
    except libvirt.libvirtError:
        pass
    deadline = time.monotonic() + timeout
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if dom.isActive():
        dom.destroy()


def lookup_domain(conn: Any, name: str) -> Any | None:
    """The domain ``name``, or None when there is none."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in NOT_FOUND:
            return None
        raise


def reserve(conn: Any, nics: list[dict[str, Any]], *, remove: bool = False) -> None:
    """Add (or remove) the DHCP host entry of each NIC that reserves an address (``ipv4``) in its network, on the
    running network and in its definition (libvirt's network-update API: no restart, no guest loses its lease).
    An entry already there for the MAC is replaced; one already gone is not an error."""
    affect = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    for nic in nics:
        if not nic.get("ipv4"):
            continue
        try:
            net = conn.networkLookupByName(nic["network"])
        except libvirt.libvirtError as exc:
            if remove and exc.get_error_code() in NOT_FOUND:
                continue  # the network went first: its entries with it
            raise
        flags = affect if net.isActive() else libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        entry = f"<host mac='{nic['mac']}' ip='{nic['ipv4']}'/>"
        current = lx.reservations(ET.fromstring(net.XMLDesc(0)))
        if remove:
            if current.get(nic["mac"]) == nic["ipv4"]:
                net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                           entry, flags)
            continue
        command = (libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY if nic["mac"] in current
                   else libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST)
        net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, entry, flags)
