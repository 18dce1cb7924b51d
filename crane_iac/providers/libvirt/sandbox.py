"""The embedded default hypervisor: libvirt's in-process test driver, loaded from ``.crane/sandbox.xml`` and written
back at each checkpoint (autostart flags and stopped pools beside it), so it outlives a run like a host;
``SandboxHost`` serves it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.heap import release_freed_memory
from crane_iac.providers.libvirt import early
from crane_iac.providers.libvirt.host import NOT_FOUND, DhcpRange, Host, LibvirtdHost, ListedDomain, connect
from crane_iac.providers.libvirt.listing import runs
from crane_iac.providers.libvirt.pools import list_pools

TEST_DOMAIN_NS = "http://libvirt.org/schemas/domain/test/1.0"
SHUTOFF = 5

#: the sandbox host's processors and memory (KiB): what libvirt's node info reports, empty or not. 16 TiB: a plan's
#: guests must fit the host's memory (checks.py), and the scale benchmarks plan 30 000 VMs of 256 MiB here
NODE_INFO = """  <cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>2</threads><mhz>2400</mhz></cpu>
  <memory>17179869184</memory>
"""
EMPTY_NODE = "<node>\n" + NODE_INFO + """  <pool type='dir'>
    <name>default</name>
    <target><path>{pool_dir}</path></target>
  </pool>
</node>
"""


class Sandbox:
    """Owns the node file and its lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.node_file = self.directory / "sandbox.xml"
        self.flags_file = self.directory / "sandbox-flags.json"
        self._lock: IO[str] | None = None
        self._empty: tempfile._TemporaryFileWrapper[str] | None = None

    def prepare(self, exclusive: bool, timeout: float = 0.0) -> str:
        """The URI to open. Runs that change the sandbox take its lock; nothing is written until a checkpoint."""
        if exclusive:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / "sandbox.lock", "a+")  # noqa: SIM115 - held for the run
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.release()
                        raise ProviderError(
                            f"the sandbox hypervisor {self.node_file} is in use by another crane run; "
                            "wait for it or pass --lock-timeout SECONDS") from None
                    time.sleep(0.1)
        if self.node_file.exists():
            return f"test://{self.node_file}"
        # no sandbox yet: start from an empty one outside .crane/, so that a run that changes nothing leaves no file
        self._empty = tempfile.NamedTemporaryFile("w", prefix="crane-empty-", suffix=".xml")  # noqa: SIM115
        self._empty.write(EMPTY_NODE.format(pool_dir=self.directory / "pool"))
        self._empty.flush()
        return f"test://{self._empty.name}"

    def flags(self) -> dict[str, list[str]]:
        """What the node file cannot hold: which domains start with the host, and which pools are stopped (the test
        driver starts every pool it loads)."""
        try:
            data = json.loads(self.flags_file.read_text())
        except (OSError, ValueError):
            return {"autostart_domains": [], "stopped_pools": []}
        return {key: list(data.get(key, [])) for key in ("autostart_domains", "stopped_pools")}

    def save(self, domains: list[str], networks: list[str], pools: list[str], autostart: list[str],
             stopped_pools: list[str]) -> None:
        """Write the whole sandbox: domain XML (with run state), networks, and pools with their volumes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = "".join(("<node>\n", NODE_INFO, *domains, *networks, *pools, "</node>\n"))
        self._write(self.flags_file, json.dumps({"autostart_domains": sorted(autostart),
                                                 "stopped_pools": sorted(stopped_pools)}))
        self._write(self.node_file, body)

    def saved_volumes(self, pool: str) -> str:
        """The volumes the node file holds for ``pool``: a stopped pool's, which the test driver cannot list but
        keeps (starting the pool brings them back), so that saving the sandbox keeps them too."""
        try:
            node = ET.parse(self.node_file).getroot()
        except (OSError, ET.ParseError):
            return ""
        for element in node.iterfind("pool"):
            if element.findtext("name") == pool:
                return "".join(ET.tostring(vol, encoding="unicode") for vol in element.iterfind("volume"))
        return ""

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def connected(self) -> None:
        """The driver has read the empty node: its temporary file goes now, so a killed run leaves none behind."""
        if self._empty is not None:
            self._empty.close()
            self._empty = None

    def release(self) -> None:
        if self._empty is not None:
            self._empty.close()
            self._empty = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def domain_for_node_file(xml: str, running: bool) -> str:
    """A domain's inactive XML as the node file wants it: with the test driver's run state."""
    if running:
        return xml
    head, _, tail = xml.partition(">")
    body, _, _ = tail.rpartition("</domain>")
    return f"{head} xmlns:test='{TEST_DOMAIN_NS}'>{body}  <test:runstate>{SHUTOFF}</test:runstate>\n</domain>\n"


class SandboxHost(Host):
    """The sandbox as the provider's host: one in-process driver (calls in parallel gain nothing), a node file
    written at checkpoints, simulated addresses, and volumes that hold no data."""

    max_parallelism = 1  # the test driver runs in this process under one driver lock

    def __init__(self, directory: Path, *, mutating: bool, lock_timeout: float = 0.0) -> None:
        self.sandbox = Sandbox(directory)
        uri = self.sandbox.prepare(exclusive=mutating, timeout=lock_timeout)
        try:
            conn = early.take(uri)  # opened while the command started, when crane_iac.early saw which it would be
            if conn is None:
                conn = connect(uri)
        except ProviderError:
            self.sandbox.release()
            raise
        self.sandbox.connected()
        release_freed_memory()
        # the test driver keeps a domain's live and persistent definitions equal, and the node file wants the live
        super().__init__(conn, uri, local=True, domain_xml_flags=0)
        # the sandbox's node file changes only through crane, and a no-op plan reads back what the last run read
        self.listing_file = self.sandbox.directory / "sandbox-domains.cache"
        self.mutating = mutating
        self._lock = threading.Lock()
        # what the node file will say. Once filled by a full listing it is kept current by every mutation (crane
        # holds the sandbox lock), so a checkpoint writes it without listing 10,000 domains.
        self._node_xml: dict[str, str | None] = {}  # domain name → XML, or None when a mutation made it stale
        self._autostart: set[str] = set()
        self._node_complete = False
        self._dirty = False
        flags = self.sandbox.flags()
        for name in flags["autostart_domains"]:
            try:
                self.conn.lookupByName(name).setAutostart(1)
            except libvirt.libvirtError:
                pass
        for name in flags["stopped_pools"]:  # stopped outside crane (`virsh pool-destroy`), and so they stay
            try:
                self.conn.storagePoolLookupByName(name).destroy()
            except libvirt.libvirtError:
                pass

    def list_domains(self) -> tuple[Iterator[ListedDomain], set[str]]:
        autostart = {d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
        if self.mutating:
            self._node_xml.clear()
            self._autostart = set(autostart)
            self._node_complete = False
        domains = self.conn.listAllDomains(0)

        def listed() -> Iterator[ListedDomain]:
            for dom in domains:
                name, xml = dom.name(), dom.XMLDesc(self.domain_xml_flags)
                running = runs(xml)  # only a running domain's live XML has an id: no second call
                if self.mutating:  # kept for the node file written at checkpoints
                    self._node_xml[name] = domain_for_node_file(xml, running)
                yield name, xml, running
            if self.mutating:  # a listing given up half-way leaves the next checkpoint to list again
                self._node_complete = True

        return listed(), autostart

    def dhcp_leases(self, networks: Iterable[str]) -> dict[str, tuple[str, int]]:
        return {}  # the test driver runs no DHCP server

    def address(self, mac: str, network: str | None, ranges: dict[str, DhcpRange],
                leases: dict[str, str]) -> str | None:
        """Simulated: picked from the network's DHCP range by the MAC, the same every time."""
        if network not in ranges:
            return None
        first, last = ranges[network]
        # inet_ntoa: what str(ipaddress.IPv4Address(n)) gives, a tenth of the cost for 10,000 guests
        return socket.inet_ntoa((first + int(mac.replace(":", ""), 16) % (last - first + 1)).to_bytes(4, "big"))

    def build_pool(self, pool: Any, missing: list[str]) -> list[str]:
        """The sandbox touches nothing on this machine's disks: the test driver needs no directory for a pool, so
        none is made (and none is removed); a real host makes them (``Host.build_pool``)."""
        del pool, missing
        return []

    def resize(self, pool: Any, vol: Any, capacity_gib: int) -> Any:
        """The test driver cannot resize and holds no data: a volume of the new size is the same thing."""
        xml = ET.fromstring(vol.XMLDesc(0))
        capacity = xml.find("capacity")
        assert capacity is not None
        capacity.set("unit", "GiB")
        capacity.text = str(capacity_gib)
        vol.delete(0)
        return pool.createXML(ET.tostring(xml, encoding="unicode"), 0)

    def changing(self, kind: str, physical: str) -> None:
        with self._lock:
            self._dirty = True
            if kind in ("vm", "container"):  # re-read at the next checkpoint unless the mutation reads it again
                self._node_xml[physical] = None

    def domain_changed(self, dom: Any, running: bool, xml: str | None = None) -> None:
        entry = domain_for_node_file(dom.XMLDesc(0) if xml is None else xml, running)
        with self._lock:
            self._node_xml[dom.name()] = entry

    def domain_gone(self, name: str) -> None:
        with self._lock:
            self._node_xml.pop(name, None)
            self._autostart.discard(name)

    def set_autostart(self, dom: Any, name: str, on: bool) -> None:
        """Set the flag, and keep the record of it (the node file cannot hold autostart) current."""
        dom.setAutostart(int(on))
        with self._lock:
            (self._autostart.add if on else self._autostart.discard)(name)

    def checkpoint(self) -> None:
        """Write the test driver's whole state to the node file if anything changed."""
        with self._lock:
            if not self._dirty:
                return
            try:
                self._save()
            except libvirt.libvirtError as exc:
                raise ProviderError(f"saving the sandbox failed: {exc.get_error_message()}") from None
            self._dirty = False

    def _save(self) -> None:
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
                if exc.get_error_code() not in NOT_FOUND:
                    raise
                del self._node_xml[name]  # deleted by a step still running while this snapshot was taken
        domains = [xml for xml in self._node_xml.values() if xml is not None]
        autostart = sorted(self._autostart & set(self._node_xml))
        networks = [net.XMLDesc(0) for net in self.conn.listAllNetworks(0)]
        pools, stopped = [], []
        for pool, name, _ in list_pools(self.conn):
            xml = pool.XMLDesc(0)
            if pool.isActive():
                vols = "".join(v.XMLDesc(0) for v in pool.listAllVolumes(0))
            else:
                vols = self.sandbox.saved_volumes(name)
                stopped.append(name)
            head, _, _ = xml.rpartition("</pool>")
            pools.append(f"{head}{vols}</pool>\n")
        self.sandbox.save(domains, networks, pools, autostart, stopped)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.sandbox.release()


def open_host(uri: str | None, *, sandbox_dir: Path, mutating: bool, lock_timeout: float = 0.0) -> Host:
    """The host ``uri`` names, or with ``uri=None`` the embedded sandbox kept under ``sandbox_dir``."""
    if uri is None:
        return SandboxHost(sandbox_dir, mutating=mutating, lock_timeout=lock_timeout)
    return LibvirtdHost(uri)
