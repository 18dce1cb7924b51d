"""``Host``: the one seam between a libvirtd host (``LibvirtdHost``) and the sandbox (``SandboxHost``, sandbox.py),
chosen once when the provider connects; the per-kind modules call it for whatever differs and never ask which."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libvirt

from crane_iac.errors import ProviderError

#: libvirt's error codes for an object that is not there (any more)
NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
}
#: a DHCP range as integers (first, last); its network's name maps to it
DhcpRange = tuple[int, int]
#: a domain as a bulk listing reports it: name, XML, whether it runs
ListedDomain = tuple[str, str, bool]


def _ignore_errors(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is registered; crane reports them itself."""


def connect(uri: str) -> Any:
    """Open ``uri``; a refusal is a ``ProviderError`` naming it."""
    libvirt.registerErrorHandler(_ignore_errors, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise ProviderError(f"cannot connect to {uri}: {exc.get_error_message()}") from None


class Host(ABC):
    """A libvirt connection and what this kind of host needs done its own way."""

    #: calls worth making at once (None: as many as the user asks)
    max_parallelism: int | None = None
    #: where a bulk listing keeps what it parsed for the next (listing.py), or None: parsed every time
    listing_file: Path | None = None

    def __init__(self, conn: Any, uri: str, *, local: bool, domain_xml_flags: int) -> None:
        self.conn = conn
        self.uri = uri
        #: a file path in a stack names a file on this machine: crane can look before apply
        self.local = local
        #: the flags that read the domain XML crane manages
        self.domain_xml_flags = domain_xml_flags
        #: the hypervisor driver behind the connection: ``qemu``, ``lxc``, ``test``, ...
        self.driver = conn.getType().lower()
        #: libvirt's test driver: it runs nothing and holds no data (no uploads, no resizes)
        self.test_driver = self.driver == "test"

    @abstractmethod
    def list_domains(self) -> tuple[Iterator[ListedDomain], set[str]]:
        """Every domain, and the names of those that start with the host, in as few calls as the host allows.
        The domains come one at a time, to be parsed as they are taken: 10,000 parsed trees at once would be
        ~150 MB."""

    @abstractmethod
    def dhcp_leases(self, networks: Iterable[str]) -> dict[str, tuple[str, int]]:
        """MAC → (IPv4 address, expiry time) that the DHCP servers of ``networks`` leased."""

    @abstractmethod
    def address(self, mac: str, network: str | None, ranges: dict[str, DhcpRange],
                leases: dict[str, str]) -> str | None:
        """The IPv4 address of a running guest's NIC, given the leases (MAC → address) read for it."""

    @abstractmethod
    def resize(self, pool: Any, vol: Any, capacity_gib: int) -> Any:
        """The volume grown to ``capacity_gib``."""

    def build_pool(self, pool: Any, missing: list[str]) -> list[str]:
        """Make a pool's missing directory and the missing ones above it (``missing``, outermost first, as seen on
        this machine); return those that were made. libvirtd's build makes them (the daemon may be allowed where crane
        is not)."""
        pool.build(0)
        return [d for d in missing if os.path.isdir(d)]

    def changing(self, kind: str, physical: str) -> None:
        """Called before each mutation (the sandbox notes what to write at the next checkpoint)."""

    def domain_changed(self, dom: Any, running: bool, xml: str | None = None) -> None:
        """Called after a mutation left ``dom`` as it is (``xml``: what the caller read of it already), for the
        sandbox's node file."""

    def domain_gone(self, name: str) -> None:
        """Called when a domain has been undefined."""

    def set_autostart(self, dom: Any, name: str, on: bool) -> None:
        """Start the domain with the host, or not."""
        dom.setAutostart(int(on))

    def checkpoint(self) -> None:
        """Make every mutation so far durable (a hypervisor host already has)."""

    def close(self) -> None:
        """Release the connection."""
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass


class LibvirtdHost(Host):
    """A host a libvirt URI names (``qemu:///system``, ``qemu+ssh://…``): libvirtd keeps its state, runs the
    guests, and DHCP leases their addresses."""

    def __init__(self, uri: str) -> None:
        # read the persistent definition, which is what crane manages (a live value such as the balloon's current
        # size trails it for a moment after a change)
        super().__init__(connect(uri), uri, local=not urlsplit(uri).hostname,
                         domain_xml_flags=libvirt.VIR_DOMAIN_XML_INACTIVE)

    def list_domains(self) -> tuple[Iterator[ListedDomain], set[str]]:
        autostart = {d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
        domains = self.conn.listAllDomains(0)
        active = {d.name() for d in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        flags = self.domain_xml_flags
        if len(domains) > 64:
            # over RPC each XMLDesc is a round trip: keep a few in flight (libvirtd serves 5 per client at once)
            with ThreadPoolExecutor(4, thread_name_prefix="crane-read") as pool:
                xmls = list(pool.map(lambda d: d.XMLDesc(flags), domains, chunksize=256))
        else:
            xmls = [d.XMLDesc(flags) for d in domains]

        def listed() -> Iterator[ListedDomain]:
            for dom, xml in zip(domains, xmls, strict=True):
                name = dom.name()
                yield name, xml, name in active

        return listed(), autostart

    def dhcp_leases(self, networks: Iterable[str]) -> dict[str, tuple[str, int]]:
        leases: dict[str, tuple[str, int]] = {}
        for name in networks:
            try:
                entries = self.conn.networkLookupByName(name).DHCPLeases()
            except libvirt.libvirtError:
                continue  # not running, or gone since it was listed
            for entry in entries:
                if entry.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and entry.get("mac"):
                    leases[entry["mac"].lower()] = (entry["ipaddr"], int(entry.get("expirytime") or 0))
        return leases

    def address(self, mac: str, network: str | None, ranges: dict[str, DhcpRange],
                leases: dict[str, str]) -> str | None:
        return leases.get(mac)

    def resize(self, pool: Any, vol: Any, capacity_gib: int) -> Any:
        vol.resize(capacity_gib * 1024**3, 0)
        return vol
