"""Containers as libvirt ``exe`` domains (the LXC driver's; a ``test`` domain in the sandbox), with crane's owner in
their metadata: define, start, stop, define anew for a change, undefine, and read their memory cgroup."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.addresses import nic_outputs
from crane_iac.providers.libvirt.domains import lookup_domain, shut_down
from crane_iac.providers.libvirt.host import NOT_FOUND, Host
from crane_iac.providers.libvirt.rules import restarts
from crane_iac.providers.metrics import MemoryUsage
from crane_iac.templates import layers
from crane_iac.templates.library import LIBRARY_POOL, Library, TemplateError

#: where libvirt 9.0 puts a container's memory cgroup on a host without systemd (v1 controllers, then unified v2):
#: ``machine/lxc-<controller pid>-<name>.libvirt-lxc`` under the ``/machine`` partition
_CGROUP_DIRS = ("/sys/fs/cgroup/memory/machine/lxc-{id}-{name}.libvirt-lxc",
                "/sys/fs/cgroup/machine/lxc-{id}-{name}.libvirt-lxc")


def container_outputs(uuid: str | None, props: dict[str, Any]) -> dict[str, Any]:
    """A container's outputs: its UUID and its NICs' fixed addresses (known whether it runs or not), IPv4 and IPv6
    alike (``nic_outputs``)."""
    return {"uuid": uuid, **nic_outputs([nic.get("ipv4") for nic in props["nics"]], props["nics"])}


#: how often a container start that lost libvirt_lxc's cgroup race is tried again, and the pause before each
CGROUP_RACE_RETRIES, CGROUP_RACE_PAUSE = 2, 0.25


def start(dom: Any) -> None:
    """Start a defined container. libvirt 9.0's LXC controller on a host with v1 cgroup controllers now and then
    fails a start with ``Failure in libvirt_lxc startup: Unable to write to '/sys/fs/cgroup/cpuset/machine/lxc-…/
    tasks': No such file or directory`` (its new cgroup was not there yet; seen here about once in ten test runs);
    the container is left defined and stopped, and the same start a moment later succeeds. Any other refusal, or
    that one again after the retries, is raised as it is."""
    for attempt in range(CGROUP_RACE_RETRIES + 1):
        try:
            dom.create()
            return
        except libvirt.libvirtError as exc:
            text = str(exc)
            if attempt == CGROUP_RACE_RETRIES or "libvirt_lxc startup" not in text or "/sys/fs/cgroup/" not in text:
                raise
        time.sleep(CGROUP_RACE_PAUSE)


#: where libvirt 9.0 keeps a container's cgroups on a host without systemd, one directory per controller
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: how long a leftover cgroup of a stopped container is tried again while its last tasks exit, and the pause
CGROUP_RELEASE_TRIES, CGROUP_RELEASE_PAUSE = 20, 0.1


def release_cgroups(physical: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove what libvirt left of stopped container ``physical``'s cgroups; the ones that could not be removed.

    libvirt 9.0 removes a container's cgroups when it stops, but on a host with v1 controllers it now and then
    leaves one behind (seen here: the cpu and cpuacct directories of a container destroyed while its last tasks were
    exiting, empty afterwards and never removed). Only ``machine/lxc-<pid>-<physical>.libvirt-lxc`` directories with
    no task left are removed (rmdir refuses any other); one whose tasks are still exiting is tried again briefly."""
    pattern = re.compile(rf"lxc-\d+-{re.escape(physical)}\.libvirt-lxc")
    left = [d for d in root.glob("*/machine/lxc-*.libvirt-lxc") if pattern.fullmatch(d.name)]
    for _ in range(CGROUP_RELEASE_TRIES):
        still = []
        for directory in left:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                still.append(directory)
        if not still:
            return []
        left = still
        time.sleep(CGROUP_RELEASE_PAUSE)
    return left


class Containers:
    """The ``container`` kind."""

    def __init__(self, host: Host, *, domain_type: str, shutdown_timeout: float, library_dir: Path) -> None:
        """``library_dir``: the sandbox's template library (the project's .crane/templates) while it has no pool."""
        self.host = host
        self.library_dir = library_dir
        self.domain_type = domain_type
        self.shutdown_timeout = shutdown_timeout

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        dom = self.host.conn.defineXML(lx.render_container(physical, p, owner, domain_type=self.domain_type,
                                                           mount_dirs=self._mount_dirs(p),
                                                           root_dir=self._root_dir(physical, p)))
        if p["autostart"]:
            self.host.set_autostart(dom, physical, True)
        if p["running"]:
            start(dom)
        self.host.domain_changed(dom, bool(p["running"]))
        # what was defined is what a read returns (read_all parses to the same shape; drift would show if not)
        return Live("container", physical, dict(p), container_outputs(dom.UUIDString(), p), owner.stack,
                    owner.address)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        dom = lookup_domain(self.host.conn, physical)
        return None if dom is None else self._read(dom)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        dom = self.host.conn.lookupByName(physical)
        if restarts("container", before, after):
            return self._redefine(dom, physical, after)
        if after["autostart"] != before.get("autostart"):
            self.host.set_autostart(dom, physical, after["autostart"])
        if after["running"] and not dom.isActive():
            self._root_dir(physical, after)  # mounted again (after a reboot /run is empty)
            start(dom)
        elif not after["running"] and dom.isActive():
            shut_down(dom, self.shutdown_timeout)
            self._release_cgroups(physical)
        return self._read(dom)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        dom = self.host.conn.lookupByName(physical)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        self.host.domain_gone(physical)
        self._release_cgroups(physical)
        if p.get("template") and not self.host.test_driver:
            layers.release_root(physical)

    def memory_usage(self, physical: str) -> MemoryUsage | None:
        """The container's memory cgroup: ``total`` its limit, ``used`` what it holds less the page cache the kernel
        can drop (read from the cgroup itself where crane runs on the host; else libvirt's figure, cache included).
        None while it is stopped, and in the sandbox, which runs nothing."""
        if self.host.test_driver:
            return None
        try:
            dom = self.host.conn.lookupByName(physical)
            if not dom.isActive():
                return None
            _, limit_kib, used_kib, _, _ = dom.info()
            cgroup = self._cgroup_memory(dom, physical) if self.host.local else None
        except libvirt.libvirtError as exc:
            raise ProviderError(f"reading the memory of container {physical!r} failed: "
                                f"{exc.get_error_message()}") from None
        total = limit_kib / 1024
        if cgroup is None:
            used = used_kib / 1024
            return MemoryUsage(used_mib=used, total_mib=total, unused_mib=max(total - used, 0.0))
        usage, reclaimable = cgroup
        return MemoryUsage(used_mib=max(usage - reclaimable, 0) / 1024**2, total_mib=total,
                           unused_mib=max(total - usage / 1024**2, 0.0))

    @staticmethod
    def _cgroup_memory(dom: Any, physical: str) -> tuple[int, int] | None:
        """(bytes charged, bytes of inactive page cache) from the container's memory cgroup, or None if not found."""
        for pattern in _CGROUP_DIRS:
            directory = Path(pattern.format(id=dom.ID(), name=physical))
            try:
                stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
                usage_file = "memory.usage_in_bytes" if (directory / "memory.usage_in_bytes").exists() \
                    else "memory.current"
                usage = int((directory / usage_file).read_text())
            except (OSError, ValueError):
                continue
            return usage, int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
        return None

    def library(self) -> Library:
        """The host's template library: the directory of its pool ``crane-templates``."""
        try:
            pool = self.host.conn.storagePoolLookupByName(LIBRARY_POOL)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in NOT_FOUND:
                raise
            if self.host.test_driver:
                return Library(self.library_dir)
            raise ProviderError(f"{self.host.uri} has no template library (storage pool {LIBRARY_POOL!r}): build a "
                                "template first (crane template build)") from None
        return Library(Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "/"))

    def _root_dir(self, physical: str, p: dict[str, Any]) -> str:
        """The directory passed as the container's root: ``root``, or with a template the overlay of its layers over
        ``root``, mounted here (the sandbox runs nothing: it mounts nothing)."""
        template = p.get("template")
        if not template or self.host.test_driver:
            return str(p["root"])
        if not self.host.local:
            raise ProviderError(f"container {physical}: crane mounts a template's layers on the host it runs on, not "
                                f"on {self.host.uri}")
        try:
            images, base = self.library().layers(template)
        except TemplateError as exc:
            raise ProviderError(str(exc)) from None
        if base != p["root"]:
            raise ProviderError(f"container {physical}: template {template!r} was built on {base!r}, not on its root "
                                f"{p['root']!r}; give root={base!r}")
        return str(layers.container_root(physical, images, base))

    def _mount_dirs(self, p: dict[str, Any]) -> dict[str, str]:
        """Each mount point's host directory: the path of its ``pool/volume``."""
        dirs = {}
        for target, ref in p["mounts"].items():
            pool, _, name = ref.partition("/")
            dirs[target] = self.host.conn.storagePoolLookupByName(pool).storageVolLookupByName(name).path()
        return dirs

    def _read(self, dom: Any) -> Live:
        """The container as libvirt reports it; its mounts named by the volumes whose directories they are."""
        xml = dom.XMLDesc(self.host.domain_xml_flags)
        root = ET.fromstring(xml)
        active = bool(dom.isActive())
        self.host.domain_changed(dom, active, xml)
        owner = lx.owner_of(root)
        props = lx.parse_container(root, running=active, autostart=bool(dom.autostart()),
                                   volume_by_path=self._volumes_at(root))
        return Live("container", dom.name(), props, container_outputs(root.findtext("uuid"), props),
                    owner.stack if owner else None, owner.address if owner else None)

    def _volumes_at(self, root: ET.Element) -> dict[str, str]:
        """``pool/volume`` by directory, for the directories the container mounts."""
        found = {}
        for source in root.iterfind("devices/filesystem/source"):
            directory = source.get("dir")
            if not directory or directory == "/":
                continue
            try:
                vol = self.host.conn.storageVolLookupByPath(directory)
                found[directory] = f"{vol.storagePoolLookupByVolume().name()}/{vol.name()}"
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in NOT_FOUND:
                    raise
        return found

    def _release_cgroups(self, physical: str) -> None:
        """On the host crane runs on, the cgroups libvirt left of the stopped container (``release_cgroups``)."""
        if self.host.local and not self.host.test_driver:
            release_cgroups(physical)

    def _redefine(self, dom: Any, physical: str, after: dict[str, Any]) -> Live:
        """A new definition (same UUID, same owner): stop the container, define it anew and start it again if it
        should run (after a crash in between, the next plan starts it)."""
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        owner = lx.owner_of(root) or Owner("", "")
        if dom.isActive():
            shut_down(dom, self.shutdown_timeout)
            self._release_cgroups(physical)
        dom = self.host.conn.defineXML(lx.render_container(
            physical, after, owner, domain_type=root.get("type") or self.domain_type,
            mount_dirs=self._mount_dirs(after), uuid=dom.UUIDString(), root_dir=self._root_dir(physical, after)))
        self.host.set_autostart(dom, physical, after["autostart"])
        if after["running"]:
            start(dom)
        return self._read(dom)
