"""LibvirtProvider: VMs as domains, Networks as libvirt networks, StoragePools as storage pools, Volumes and
cloud-init seeds as storage volumes.

Live state is read in bulk: one list call per kind (plus the active and autostart
lists for domains), then XML parsing. Domains and networks carry a
``<crane:owner stack=… address=…>`` element in their ``<metadata>``; storage pools and
volumes have no metadata in libvirt, so crane adopts them through the intents it records
before each create. What libvirt cannot report back (the image a volume was uploaded
from, a seed's contents, whether crane made a pool's directory) is left out of the live
properties, and the engine takes it from state.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live, Owner, Reach
from crane_iac.providers.base import MemoryUsage, Provider, changed_fields
from crane_iac.providers.libvirt import images, storage
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.sandbox import Sandbox, domain_for_node_file

T = TypeVar("T")
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
}


def _vcpus(before: Any, after: Any) -> Reach:
    """More vCPUs (within the maximum) are hot-plugged; fewer wait for a restart, as libvirt 9.0 cannot unplug
    them cleanly from a running guest."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.RESTART


def _capacity(before: Any, after: Any) -> Reach:
    """A volume grows in place; it cannot shrink."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.REPLACE


CHANGE_RULES: dict[str, dict[str, Any]] = {
    "vm": {
        # within the defined maximum these change on the running guest
        "vcpus": _vcpus,
        "memory_mib": Reach.LIVE,
        "running": Reach.LIVE,
        "autostart": Reach.LIVE,
        "description": Reach.LIVE,
        # the persistent definition changes now and the guest boots with it: apply restarts a running guest
        "max_vcpus": Reach.RESTART,
        "max_memory_mib": Reach.RESTART,
        "kernel": Reach.RESTART,
        "initrd": Reach.RESTART,
        "cmdline": Reach.RESTART,
        # NICs and disks: a new domain
    },
    "network": {},
    # the rest of a volume (pool, format, base, source, clone), a pool and a seed: a new object
    "volume": {"capacity_gib": _capacity},
}
#: a volume made from an image or a copy may leave these out (None): the size and format of what it is made from
_FROM_ORIGIN = ("capacity_gib", "format")
#: a seed's contents and pool; the rest of what its volume reports (size, format) follows from them
_SEED_FIELDS = ("pool", "user_data", "meta_data", "network_config")
#: in-place changes that change outputs: a VM started or stopped gains or loses its addresses
OUTPUT_FIELDS: dict[str, frozenset[str]] = {"vm": frozenset({"running"})}
#: what the plan says of a change that waits for apply to restart the guest
NOTES = {Reach.RESTART: "restarts the guest"}


def diff_properties(kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    """The libvirt provider's judgement of a change (pure: the planner's tests use it without a connection).

    What libvirt cannot report (a volume's ``source``/``clone``, a seed's contents) comes from state; missing from
    ``before`` (an object adopted after a crash, whose upload may not have finished) it differs from what the stack
    says, and the object is replaced."""
    if kind == "volume":
        after = {k: before[k] if v is None and k in _FROM_ORIGIN and k in before else v for k, v in after.items()}
    elif kind == "cloudinit":
        before, after = {k: before.get(k) for k in _SEED_FIELDS}, {k: after.get(k) for k in _SEED_FIELDS}
    elif kind == "pool":
        before = {k: v for k, v in before.items() if k != "built"}  # a fact about the past, not a setting
    return changed_fields(before, after, CHANGE_RULES.get(kind, {}), OUTPUT_FIELDS.get(kind, frozenset()), NOTES)


def _ignore_errors(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is registered; crane reports them itself."""


class LibvirtProvider(Provider):
    kinds = ("pool", "network", "volume", "cloudinit", "vm")

    def __init__(
        self,
        uri: str | None,
        *,
        sandbox_dir: Path,
        mutating: bool,
        domain_type: str | None = None,
        stats_period: int = 2,
        lock_timeout: float = 0.0,
        address_timeout: float = 120.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        libvirt.registerErrorHandler(_ignore_errors, None)
        self.sandbox: Sandbox | None = None
        if uri is None:
            self.sandbox = Sandbox(sandbox_dir)
            uri = self.sandbox.prepare(exclusive=mutating, timeout=lock_timeout)
            self.max_parallelism = 1  # the test driver runs in this process under one driver lock
        self.uri = uri
        self.mutating = mutating
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            if self.sandbox:
                self.sandbox.release()
            raise ProviderError(f"cannot connect to {uri}: {exc.get_error_message()}") from None
        # libvirt's test driver (the sandbox, or a test:/// URI) holds no data: it cannot upload or resize
        self._test_driver = self.conn.getType().lower() == "test"
        self.domain_type = domain_type or ("test" if self._test_driver else "qemu")
        self.stats_period = stats_period
        self.address_timeout = address_timeout
        self.shutdown_timeout = shutdown_timeout
        self._range_cache: dict[str, tuple[int, int] | None] = {}
        #: MAC → expiry of the lease it held when apply started its guest (an earlier boot's lease, not this one's)
        self._stale_leases: dict[str, int] = {}
        self._pool_names: set[str] | None = None  # known after read_all
        self._pool_paths: dict[str, str] = {}  # pool name → directory, known after read_all
        self._planned_pools: set[str] = set()  # pools the plan being checked creates (see check)
        # a file path in a stack names a file on the hypervisor host: crane can look only when that is this machine
        self._local = self.sandbox is not None or not urlsplit(uri).hostname
        self._path_exists: dict[str, bool] = {}
        # a real host: read the persistent definition, which is what crane manages (a live value such as the
        # balloon's current size trails it for a moment after a change); the sandbox's test driver keeps the two
        # equal, and its node file wants the live XML
        self._domain_xml_flags = 0 if self.sandbox is not None else libvirt.VIR_DOMAIN_XML_INACTIVE
        self._lock = threading.Lock()
        self._network_lock = threading.Lock()
        # sandbox only: what the node file will say. Once filled by a full listing it is kept current by every
        # mutation (crane holds the sandbox lock), so a checkpoint writes it without listing 10,000 domains.
        self._node_xml: dict[str, str | None] = {}  # domain name → XML, or None when a mutation made it stale
        self._autostart: set[str] = set()
        self._node_complete = False
        self._dirty = False
        if self.sandbox is not None:
            for name in self.sandbox.flags()["autostart_domains"]:
                try:
                    self.conn.lookupByName(name).setAutostart(1)
                except libvirt.libvirtError:
                    pass

    # -- reading -----------------------------------------------------------------------------------

    def _pools(self) -> list[tuple[Any, str, str]]:
        pools = []
        for pool in self.conn.listAllStoragePools(0):
            root = ET.fromstring(pool.XMLDesc(0))
            pools.append((pool, pool.name(), root.findtext("target/path") or ""))
        return pools

    def read_all(self) -> list[Live]:
        try:
            return self._read_all()
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading {self.uri} failed: {exc.get_error_message()}") from None

    def _read_all(self) -> list[Live]:
        result: list[Live] = []
        pools = self._pools()
        self._pool_names = {name for _, name, _ in pools}
        self._pool_paths = {name: path for _, name, path in pools}
        pool_by_dir = {path: name for _, name, path in pools}
        for pool, _, _ in pools:
            props, outputs = lx.parse_pool(ET.fromstring(pool.XMLDesc(0)))
            result.append(Live("pool", pool.name(), props, outputs))
        volume_by_path: dict[str, str] = {}
        for pool, pool_name, _ in pools:
            if not pool.isActive():
                continue
            for vol in pool.listAllVolumes(0):
                props, outputs = lx.parse_volume(ET.fromstring(vol.XMLDesc(0)), pool_name, pool_by_dir)
                volume_by_path[outputs["path"]] = f"{pool_name}/{vol.name()}"
                result.append(Live("volume", vol.name(), props, outputs))
        ranges: dict[str, tuple[int, int]] = {}
        for net in self.conn.listAllNetworks(0):
            root = ET.fromstring(net.XMLDesc(0))
            dhcp = lx.dhcp_range(root)
            if dhcp is not None:
                ranges[net.name()] = dhcp
            props, outputs = lx.parse_network(root)
            owner = lx.owner_of(root)
            result.append(Live("network", net.name(), props, outputs,
                               owner.stack if owner else None, owner.address if owner else None))
        autostart = {d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
        if self.sandbox is not None and self.mutating:
            self._node_xml.clear()
            self._autostart = set(autostart)
            self._node_complete = True
        domains = self.conn.listAllDomains(0)
        flags = self._domain_xml_flags
        active = None if self.sandbox is not None else {
            d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        if self.sandbox is None and len(domains) > 64:
            # over RPC each XMLDesc is a round trip: keep a few in flight (libvirtd serves 5 per client at once)
            with ThreadPoolExecutor(4, thread_name_prefix="crane-read") as pool:
                xmls = list(pool.map(lambda d: d.XMLDesc(flags), domains, chunksize=256))
        else:
            xmls = [d.XMLDesc(flags) for d in domains]
        parsed = []
        lease_networks: set[str] = set()  # asked for leases only where a running guest has a NIC
        for dom, xml in zip(domains, xmls, strict=True):
            name = dom.name()
            root = ET.fromstring(xml)
            # only a running domain's live XML has an id: no second list call in the sandbox
            running = root.get("id") is not None if active is None else name in active
            if self.sandbox is not None and self.mutating:  # kept for the node file written at checkpoints
                self._node_xml[name] = domain_for_node_file(xml, running)
            props = lx.parse_domain(root, running=running, autostart=name in autostart,
                                    volume_by_path=volume_by_path)
            if running:
                lease_networks.update(nic["network"] for nic in props["nics"] if nic.get("network"))
            parsed.append((name, root.findtext("uuid"), props, lx.owner_of(root)))
        leases = self._leases(ranges, lease_networks) if lease_networks else {}
        for name, uuid, props, owner in parsed:
            result.append(Live("vm", name, props, self._vm_outputs(uuid, props, leases, ranges),
                               owner.stack if owner else None, owner.address if owner else None))
        return result

    # -- guest addresses ---------------------------------------------------------------------------

    def _lease_entries(self, ranges: dict[str, tuple[int, int]],
                       networks: set[str] | None = None) -> dict[str, tuple[str, int]]:
        """MAC → (IPv4 address, expiry time) its network's DHCP server leased, for the networks with a DHCP range.

        The sandbox's test driver runs no DHCP server: there, a running guest's address is simulated, picked
        from its network's range by its MAC (the same every time), and this returns nothing.
        """
        if self.sandbox is not None:
            return {}
        leases: dict[str, tuple[str, int]] = {}
        for name in ranges if networks is None else networks & set(ranges):
            try:
                entries = self.conn.networkLookupByName(name).DHCPLeases()
            except libvirt.libvirtError:
                continue  # not running, or gone since it was listed
            for entry in entries:
                if entry.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and entry.get("mac"):
                    leases[entry["mac"].lower()] = (entry["ipaddr"], int(entry.get("expirytime") or 0))
        return leases

    def _leases(self, ranges: dict[str, tuple[int, int]], networks: set[str] | None = None, *,
                fresh: bool = False) -> dict[str, str]:
        """MAC → IPv4 address leased; ``fresh``: only leases taken since apply started the guest (see ``_start``)."""
        stale = self._stale_leases
        return {mac: ip for mac, (ip, expiry) in self._lease_entries(ranges, networks).items()
                if not fresh or stale.get(mac) != expiry}

    def _start(self, dom: Any, props: dict[str, Any]) -> None:
        """Start the guest, first noting the leases its MACs hold now: MACs are stable across restarts and
        replacements, so dnsmasq still holds the last boot's lease, and waiting for the address must wait for the
        lease this boot takes (its expiry moves on) or `crane apply && curl $(crane output ip)` races the boot."""
        if self.sandbox is None:
            networks = {nic["network"] for nic in props["nics"] if nic.get("network")}
            held = self._lease_entries(self._dhcp_ranges(networks)) if networks else {}
            with self._lock:
                for nic in props["nics"]:
                    mac = nic["mac"].lower()
                    if mac in held:
                        self._stale_leases[mac] = held[mac][1]
                    else:
                        self._stale_leases.pop(mac, None)
        dom.create()

    def _addresses(self, props: dict[str, Any], leases: dict[str, str],
                   ranges: dict[str, tuple[int, int]]) -> list[str | None]:
        found: list[str | None] = []
        for nic in props["nics"]:
            mac, network = (nic.get("mac") or "").lower(), nic.get("network")
            if not props["running"]:
                found.append(None)
            elif self.sandbox is None:
                found.append(leases.get(mac))
            elif network in ranges:
                first, last = ranges[network]
                found.append(str(ipaddress.IPv4Address(first + int(mac.replace(":", ""), 16) % (last - first + 1))))
            else:
                found.append(None)
        return found

    def _vm_outputs(self, uuid: str | None, props: dict[str, Any], leases: dict[str, str],
                    ranges: dict[str, tuple[int, int]]) -> dict[str, Any]:
        addresses = self._addresses(props, leases, ranges)
        return {"uuid": uuid, "ipv4": addresses[0] if addresses else None, "addresses": addresses}

    def _dhcp_ranges(self, networks: set[str]) -> dict[str, tuple[int, int]]:
        """DHCP ranges by network name; cached for the run (crane's own network changes clear the cache)."""
        ranges = {}
        for name in networks:
            if name not in self._range_cache:
                try:
                    self._range_cache[name] = lx.dhcp_range(
                        ET.fromstring(self.conn.networkLookupByName(name).XMLDesc(0)))
                except libvirt.libvirtError:
                    continue
            dhcp = self._range_cache[name]
            if dhcp is not None:
                ranges[name] = dhcp
        return ranges

    def _guest_outputs(self, uuid: str | None, props: dict[str, Any], *, wait: bool) -> dict[str, Any]:
        """Outputs of a VM just created or changed; ``wait``: until every NIC on a DHCP network holds a lease
        (or ``address_timeout`` passes: the addresses missing then are null, and the next refresh finds them)."""
        networks = {nic["network"] for nic in props["nics"] if nic.get("network")}
        ranges = self._dhcp_ranges(networks) if networks else {}
        leases = self._leases(ranges, fresh=wait)
        deadline = time.monotonic() + (self.address_timeout if wait and self.sandbox is None else 0)
        wanted = {nic["mac"].lower() for nic in props["nics"] if nic.get("network") in ranges}
        while props["running"] and not wanted <= leases.keys() and time.monotonic() < deadline:
            time.sleep(0.25)
            leases = self._leases(ranges, fresh=wait)
        if wait:
            with self._lock:
                for mac in wanted & leases.keys():
                    self._stale_leases.pop(mac, None)
        return self._vm_outputs(uuid, props, leases, ranges)

    def memory_usage(self, kind: str, physical: str) -> MemoryUsage | None:
        if kind != "vm":
            return None
        try:
            dom = self.conn.lookupByName(physical)
            stats = dom.memoryStats() if dom.isActive() else {}
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading the memory of vm {physical!r} failed: {exc.get_error_message()}") from None
        if "available" not in stats or "usable" not in stats:
            return None  # the guest's balloon driver has not reported yet
        return MemoryUsage(used_mib=(stats["available"] - stats["usable"]) / 1024,
                           total_mib=stats["available"] / 1024, unused_mib=stats.get("unused", 0) / 1024)

    def replacement_name(self, kind: str, physical: str, properties: dict[str, Any]) -> str:
        """A generation suffix (``web`` → ``web-r2`` → ``web-r3``) for a guest without disks or a volume; the old
        object keeps its name until it is deleted. A guest with disks would share them with its replacement, and a
        network's replacement would claim the same bridge and addresses: those are refused."""
        if kind == "vm" and properties.get("disks"):
            raise ProviderError(f"its disks ({', '.join(properties['disks'])}) would be used by two guests at once; "
                                "drop create_before_destroy, or let the replacement have disks of its own")
        if kind not in ("vm", "volume"):
            raise ProviderError(f"a second {kind} would claim the same bridge or directory as the one it replaces; "
                                "drop create_before_destroy")
        match = re.fullmatch(r"(.*)-r(\d+)", physical)
        base, generation = (match.group(1), int(match.group(2))) if match else (physical, 1)
        while True:
            generation += 1
            name = f"{base}-r{generation}"
            if not self._exists(kind, name, properties):
                return name

    def _exists(self, kind: str, name: str, properties: dict[str, Any]) -> bool:
        try:
            if kind == "vm":
                self.conn.lookupByName(name)
            else:
                self.conn.storagePoolLookupByName(properties.get("pool", "default")).storageVolLookupByName(name)
        except libvirt.libvirtError:
            return False
        return True

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        """Besides the kernel files and pools the host lacks: a pool on a directory another pool holds, and a volume's
        source image (read here, where crane uploads it from: on every host) that is missing, of another format than
        the stack says, or larger than its capacity.

        A volume may live in a pool the same plan creates. The engine checks a plan's changes in dependency order,
        and a volume given its ``StoragePool`` depends on it, so the pool's check comes first: it notes the pool's
        name (a StoragePool's properties carry it, as libvirt's pool XML does), and the volume's check accepts it.
        A volume naming such a pool by a string has no dependency on it (nothing orders the two at apply either);
        it passes only if its check happens to come after the pool's, so pass the object."""
        problems = []
        if kind == "pool":
            self._planned_pools.add(properties["name"])
            holder = next((name for name, path in self._pool_paths.items()
                           if path == properties["path"] and name != properties["name"]), None)
            if holder is not None:
                problems.append(f"directory {properties['path']!r} is already the storage pool {holder!r} on "
                                f"{self.uri}; libvirt allows one pool per directory")
            if self._local and os.path.exists(properties["path"]) and not os.path.isdir(properties["path"]):
                problems.append(f"path {properties['path']!r} exists on this host and is not a directory")
        pools = (self._pool_names or set()) | self._planned_pools
        if kind in ("volume", "cloudinit") and self._pool_names is not None and properties["pool"] not in pools:
            problems.append(f"storage pool {properties['pool']!r} does not exist on {self.uri}; declare it "
                            f"(StoragePool({properties['pool']!r}, path=<directory>), passed to the volume as pool=), "
                            f"define and start it (virsh pool-define-as {properties['pool']} dir --target "
                            f"<directory>), or use one of: {', '.join(sorted(self._pool_names)) or 'none'}")
        if kind == "volume" and properties.get("source"):
            problems.extend(images.problems(properties["source"], properties.get("format"),
                                            properties.get("capacity_gib")))
        if kind == "vm" and self._local:
            for field in ("kernel", "initrd"):
                path = properties.get(field)
                if isinstance(path, str):
                    if path not in self._path_exists:
                        self._path_exists[path] = os.path.isfile(path)
                    if not self._path_exists[path]:
                        problems.append(f"{field} {path!r} is not a file on this host; QEMU could not boot it")
        return problems

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        return diff_properties(kind, before, after)

    # -- mutating ----------------------------------------------------------------------------------

    def _call(self, verb: str, kind: str, physical: str, fn: Callable[[], T]) -> T:
        with self._lock:
            self._dirty = True
            if kind == "vm":  # re-read at the next checkpoint unless the mutation caches it again
                self._node_xml[physical] = None
        try:
            return fn()
        except libvirt.libvirtError as exc:
            raise ProviderError(f"libvirt refused to {verb} {kind} {physical!r}: {exc.get_error_message()}") from None

    def create(self, kind: str, physical: str, properties: dict[str, Any], owner: Owner) -> Live:
        creators = {"vm": self._create_vm, "network": self._create_network, "volume": self._create_volume,
                    "pool": self._create_pool, "cloudinit": self._create_seed}
        return self._call("create", kind, physical, lambda: creators[kind](physical, properties, owner))

    def update(self, kind: str, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        updaters = {"vm": self._update_vm, "volume": self._update_volume}
        if kind not in updaters:
            raise ProviderError(f"{kind} {physical!r} cannot be changed in place")
        return self._call("update", kind, physical, lambda: updaters[kind](physical, before, after))

    def delete(self, kind: str, physical: str, properties: dict[str, Any]) -> None:
        deleters = {"vm": self._delete_vm, "network": self._delete_network, "volume": self._delete_volume,
                    "pool": self._delete_pool, "cloudinit": self._delete_volume}

        def run() -> None:
            try:
                deleters[kind](physical, properties)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in _NOT_FOUND:
                    raise

        self._call("delete", kind, physical, run)

    # VMs

    def _disks(self, properties: dict[str, Any]) -> list[dict[str, str]]:
        disks = []
        for index, ref in enumerate(properties["disks"]):
            pool_name, _, vol_name = ref.partition("/")
            vol = self.conn.storagePoolLookupByName(pool_name).storageVolLookupByName(vol_name)
            fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
            disks.append({"pool": pool_name, "volume": vol_name, "format": fmt.get("type", "raw") if fmt is not None
                          else "raw", "target": "vd" + chr(ord("a") + index)})
        return disks

    def _read_vm(self, dom: Any, *, wait: bool = False) -> Live:
        xml = dom.XMLDesc(self._domain_xml_flags)
        root = ET.fromstring(xml)
        active = bool(dom.isActive())
        if self.sandbox is not None:
            with self._lock:
                self._node_xml[dom.name()] = domain_for_node_file(xml, active)
        owner = lx.owner_of(root)
        props = lx.parse_domain(root, running=active, autostart=bool(dom.autostart()), volume_by_path={})
        return Live("vm", dom.name(), props, self._guest_outputs(root.findtext("uuid"), props, wait=wait),
                    owner.stack if owner else None, owner.address if owner else None)

    def _create_vm(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        xml = lx.render_domain(physical, p, owner, domain_type=self.domain_type, disks=self._disks(p),
                               stats_period=self.stats_period)
        dom = self.conn.defineXML(xml)
        if p["autostart"]:
            self._set_autostart(dom, physical, True)
        if p["running"]:
            self._start(dom, p)
        if self.sandbox is not None:
            with self._lock:
                self._node_xml[physical] = domain_for_node_file(dom.XMLDesc(0), bool(p["running"]))
        # what was defined is what a read returns (read_all parses to the same shape; drift would show if not)
        return Live("vm", physical, dict(p), self._guest_outputs(dom.UUIDString(), p, wait=True),
                    owner.stack, owner.address)

    def _update_vm(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        dom = self.conn.lookupByName(physical)
        if any(f.reach is Reach.RESTART for f in diff_properties("vm", before, after)):
            return self._redefine_vm(dom, physical, after)
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
            self._set_autostart(dom, physical, after["autostart"])
        started = after["running"] and not dom.isActive()
        if started:
            self._start(dom, after)
        elif not after["running"] and dom.isActive():
            self._stop(dom)
        return self._read_vm(dom, wait=started)

    def _redefine_vm(self, dom: Any, physical: str, after: dict[str, Any]) -> Live:
        """A change libvirt cannot make live: stop the guest, define the domain anew (same UUID, same owner) with
        every property, and start it again if it should run. A crash in between leaves a defined domain whose
        running state the next plan corrects."""
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        owner = lx.owner_of(root) or Owner("", "")
        if dom.isActive():
            self._stop(dom)
        xml = lx.render_domain(physical, after, owner, domain_type=root.get("type") or self.domain_type,
                               disks=self._disks(after), stats_period=self.stats_period, uuid=dom.UUIDString())
        dom = self.conn.defineXML(xml)
        self._set_autostart(dom, physical, after["autostart"])
        if after["running"]:
            self._start(dom, after)
        return self._read_vm(dom, wait=bool(after["running"]))

    def _set_autostart(self, dom: Any, physical: str, on: bool) -> None:
        """Set the flag, and keep the sandbox's record of it (the node file cannot hold autostart) current."""
        dom.setAutostart(int(on))
        with self._lock:
            (self._autostart.add if on else self._autostart.discard)(physical)

    def _stop(self, dom: Any) -> None:
        """Ask the guest to shut down; power it off if it has not within ``shutdown_timeout`` seconds."""
        timeout = self.shutdown_timeout
        try:
            dom.shutdown()
        except libvirt.libvirtError:
            pass
        deadline = time.monotonic() + timeout
        while dom.isActive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if dom.isActive():
            dom.destroy()

    def _delete_vm(self, physical: str, _p: dict[str, Any]) -> None:
        dom = self.conn.lookupByName(physical)
        if dom.isActive():
            dom.destroy()
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NOT_FOUND:
                raise
            dom.undefine()
        with self._lock:
            self._node_xml.pop(physical, None)
            self._autostart.discard(physical)

    # networks

    def _create_network(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        self._range_cache.pop(physical, None)
        # libvirtd picks a free virbrN when the network starts; two starting at once can pick the same one
        with self._network_lock:
            net = self.conn.networkDefineXML(lx.render_network(physical, p, owner))
            net.create()
            net.setAutostart(1)
        root = ET.fromstring(net.XMLDesc(0))
        props, outputs = lx.parse_network(root)
        return Live("network", physical, props, outputs, owner.stack, owner.address)

    def _delete_network(self, physical: str, _p: dict[str, Any]) -> None:
        self._range_cache.pop(physical, None)
        net = self.conn.networkLookupByName(physical)
        if net.isActive():
            net.destroy()
        net.undefine()

    # volumes

    def _create_volume(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        pool = self.conn.storagePoolLookupByName(p["pool"])
        if p.get("source"):
            vol = storage.from_image(self.conn, pool, physical, p, upload=not self._test_driver)
            return self._read_volume(vol, p["pool"], p)
        if p.get("clone"):
            vol = storage.from_clone(self.conn, pool, physical, p, resize=not self._test_driver)
            return self._read_volume(vol, p["pool"], p)
        base_path, base_format = None, "raw"
        if p["base"]:
            if p["base"].startswith("/"):
                base_path = p["base"]
                base_format = "qcow2" if base_path.endswith(".qcow2") else "raw"
            else:
                base_pool, _, base_name = p["base"].partition("/")
                base = self.conn.storagePoolLookupByName(base_pool).storageVolLookupByName(base_name)
                base_path = base.path()
                fmt = ET.fromstring(base.XMLDesc(0)).find("target/format")
                base_format = fmt.get("type", "raw") if fmt is not None else "raw"
        vol = pool.createXML(lx.render_volume(physical, p["capacity_gib"] * storage.GIB, p["format"], base_path,
                                              base_format), 0)
        return self._read_volume(vol, p["pool"], p)

    def _read_volume(self, vol: Any, pool_name: str, p: dict[str, Any], kind: str = "volume") -> Live:
        """The volume as libvirt reports it, with what libvirt cannot report taken from ``p``."""
        pool_by_dir = {path: name for _, name, path in self._pools()}
        props, outputs = lx.parse_volume(ET.fromstring(vol.XMLDesc(0)), pool_name, pool_by_dir)
        kept = ("source", "clone") if kind == "volume" else _SEED_FIELDS
        return Live(kind, vol.name(), {**props, **{k: p.get(k) for k in kept}}, outputs)

    def _update_volume(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        pool = self.conn.storagePoolLookupByName(after["pool"])
        vol = pool.storageVolLookupByName(physical)
        if self.sandbox is None:
            vol.resize(after["capacity_gib"] * 1024**3, 0)
        else:
            # the test driver cannot resize and holds no data: a volume of the new size is the same thing
            xml = ET.fromstring(vol.XMLDesc(0))
            capacity = xml.find("capacity")
            assert capacity is not None
            capacity.set("unit", "GiB")
            capacity.text = str(after["capacity_gib"])
            vol.delete(0)
            vol = pool.createXML(ET.tostring(xml, encoding="unicode"), 0)
        return self._read_volume(vol, after["pool"], after)

    def _delete_volume(self, physical: str, p: dict[str, Any]) -> None:
        self.conn.storagePoolLookupByName(p["pool"]).storageVolLookupByName(physical).delete(0)

    # cloud-init seeds

    def _create_seed(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        pool = self.conn.storagePoolLookupByName(p["pool"])
        vol = storage.seed_volume(self.conn, pool, physical, p, upload=not self._test_driver)
        return self._read_volume(vol, p["pool"], p, kind="cloudinit")

    # pools

    def _create_pool(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        pool, built = storage.create_pool(self.conn, physical, p)
        props, outputs = lx.parse_pool(ET.fromstring(pool.XMLDesc(0)))
        # whether crane made the directory: libvirt cannot say later, and only such a directory is removed with it
        return Live("pool", physical, {**props, "built": built}, outputs)

    def _delete_pool(self, physical: str, p: dict[str, Any]) -> None:
        storage.delete_pool(self.conn, physical, built=bool(p.get("built")))

    # durability --------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Sandbox only: write the test driver's whole state to the node file if anything changed."""
        if self.sandbox is None:
            return
        with self._lock:
            if not self._dirty:
                return
            try:
                self._save_sandbox()
            except libvirt.libvirtError as exc:
                raise ProviderError(f"saving the sandbox failed: {exc.get_error_message()}") from None
            self._dirty = False

    def _save_sandbox(self) -> None:
        assert self.sandbox is not None
        if not self._node_complete:  # a run that did not read everything first (a saved plan): list once
            known = dict(self._node_xml)
            self._node_xml = {d.name(): None for d in self.conn.listAllDomains(0)}
            self._node_xml.update({k: v for k, v in known.items() if k in self._node_xml})
            self._autostart = {d.name() for d in
                               self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
            self._node_complete = True
        for name in [n for n, xml in self._node_xml.items() if xml is None]:
            try:
                dom = self.conn.lookupByName(name)
                self._node_xml[name] = domain_for_node_file(dom.XMLDesc(0), bool(dom.isActive()))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in _NOT_FOUND:
                    raise
                del self._node_xml[name]  # deleted by a step still running while this snapshot was taken
        domains = [xml for xml in self._node_xml.values() if xml is not None]
        autostart = sorted(self._autostart & set(self._node_xml))
        networks = [net.XMLDesc(0) for net in self.conn.listAllNetworks(0)]
        pools = []
        for pool, _, _ in self._pools():
            xml = pool.XMLDesc(0)
            vols = "".join(v.XMLDesc(0) for v in pool.listAllVolumes(0)) if pool.isActive() else ""
            head, _, _ = xml.rpartition("</pool>")
            pools.append(f"{head}{vols}</pool>\n")
        self.sandbox.save(domains, networks, pools, autostart)

    def close(self) -> None:
        try:
            self.checkpoint()
        finally:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            if self.sandbox is not None:
                self.sandbox.release()
