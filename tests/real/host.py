"""Helpers for the real hypervisor (qemu:///system, lxc:///system) shared by the integration tests and
bench/boot.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import libvirt

from crane_iac.templates import layers
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
REAL_URI = "qemu:///system"
#: the keys of an endpoint on the real QEMU host that boots the test guest (a table's body in crane.toml)
REAL_ENDPOINT = f'uri = "{REAL_URI}"\ndomain_type = "qemu"\naddress_timeout = 90\nshutdown_timeout = 3\n'
LXC_URI = "lxc:///system"
GUEST_DIR = Path(os.environ.get("CRANE_GUEST_DIR", "/var/cache/crane/guest"))


@dataclass
class RealHost:
    conn: libvirt.virConnect
    kernel: Path
    initrd: Path

    #: a pool the stack does not declare whose volumes named with a prefix are also swept (bench/boot.py's baseline)
    pool: str | None = None

    def _pools(self, prefix: str) -> list[libvirt.virStoragePool]:
        """The pools a stack with ``prefix`` declares (``<prefix>pool``), and ``pool``, as they are now."""
        found = [p for p in self.conn.listAllStoragePools(0) if p.name().startswith(prefix) or p.name() == self.pool]
        for pool in found:
            if pool.isActive():
                pool.refresh(0)
        return found

    def names(self, prefix: str) -> dict[str, list[str]]:
        """Everything on the host whose name starts with ``prefix``: domains, networks, pools and their volumes."""
        pools = self._pools(prefix)
        return {
            "domains": sorted(d.name() for d in self.conn.listAllDomains(0) if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in self.conn.listAllNetworks(0) if n.name().startswith(prefix)),
            "pools": sorted(p.name() for p in pools if p.name().startswith(prefix)),
            "volumes": sorted(v.name() for p in pools if p.isActive() for v in p.listAllVolumes(0)
                              if v.name().startswith(prefix)),
        }

    def sweep(self, prefix: str) -> None:
        """Remove what a failed test left behind, so the next run starts clean (and the machine as it was)."""
        for dom in self.conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        for net in self.conn.listAllNetworks(0):
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                net.undefine()
        for pool in self._pools(prefix):
            if pool.isActive() and not pool.name().startswith(prefix):
                for vol in pool.listAllVolumes(0):
                    if vol.name().startswith(prefix):
                        vol.delete(0)
        remove_pool(self.conn, f"{prefix}pool", tinyweb_pool_dir(prefix))


@dataclass
class LxcHost:
    """lxc:///system, and what containers leave on the machine: veths, cgroups, ``libvirt_lxc`` supervisors."""

    conn: libvirt.virConnect

    def names(self, prefix: str) -> dict[str, list[str]]:
        """Domains, networks, pools and volumes whose names start with ``prefix`` (as RealHost.names)."""
        return RealHost(self.conn, Path(), Path()).names(prefix)

    def sweep(self, prefix: str) -> None:
        """Remove what a failed test left behind; a directory pool's directory volumes may hold files."""
        for pool in self.conn.listAllStoragePools(0):
            if pool.name().startswith(prefix) and pool.isActive():
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    if Path(vol.path()).is_dir():
                        shutil.rmtree(vol.path())
                        pool.refresh(0)
        RealHost(self.conn, Path(), Path()).sweep(prefix)  # the pool <prefix>pool goes with its directory
        for log in Path("/var/log/libvirt/lxc").glob(f"{prefix}*.log"):  # libvirt_lxc's, one per container
            log.unlink()

    @staticmethod
    def leftovers(prefix: str, devices: list[str]) -> dict[str, list[str]]:
        """What running containers named ``prefix...`` hold on the machine: their host-side veths (``devices``),
        memory and other cgroups under libvirt's /machine partition, and their ``libvirt_lxc`` processes."""
        cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/machine/lxc-*-{prefix}*"))
        supervisors = []
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"libvirt_lxc") and any(a.startswith(prefix.encode()) for a in argv):
                supervisors.append(proc.name)
        return {"veths": sorted(d for d in devices if Path(f"/sys/class/net/{d}").exists()), "cgroups": cgroups,
                "supervisors": supervisors}


def tinyweb_pool_dir(prefix: str) -> Path:
    """Where stacks/tinyweb.py's pool keeps the data disks in the tests: a directory crane makes and removes."""
    return Path(f"/var/lib/{prefix}pool")


def _ignore(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is registered; the tests check errors themselves."""


libvirt.registerErrorHandler(_ignore, None)


def ensure_pool(conn: libvirt.virConnect, name: str, directory: Path) -> bool:
    """A started directory pool ``name`` at ``directory``, defined if the host does not have it; True when this call
    defined it (so that the caller removes it again with ``remove_pool``)."""
    created = False
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{name}</name><target><path>{directory}</path></target></pool>", 0)
        pool.build(0)  # the daemon makes the directory: this process may not be allowed to
        created = True
    if not pool.isActive():
        pool.create(0)
    return created


def drop_pool(pool: libvirt.virStoragePool) -> None:
    """Delete the pool's volumes, stop it and undefine it (its directory is the caller's)."""
    if pool.isActive():
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
    pool.undefine()


def lookup_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    """The pool ``name`` of the host, or None where it has none."""
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


def release_template_mounts(template: str, roots: list[str]) -> None:
    """What a killed container template build of ``template`` and containers ``roots`` on templates left mounted on
    this host: the overlays, the build's partial layer and its directory."""
    partial = layers.BUILDS / f".{template}.partial"
    for top in (layers.ROOTS, partial):
        for path in sorted(top.glob("**/*"), reverse=True) if top.exists() else []:
            if layers.is_mounted(path):
                subprocess.run(["umount", str(path)], check=False)
    layers.release_build(f".{template}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # what a start without the mount left
    for name in roots:
        layers.release_root(name)


def remove_library(pool: libvirt.virStoragePool) -> None:
    """Empty the template library's pool (its directory volumes too) and undefine it."""
    if pool.isActive():
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if Path(vol.path()).is_dir():
                shutil.rmtree(vol.path())
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
    pool.undefine()


def remove_pool(conn: libvirt.virConnect, name: str, directory: Path) -> None:
    """Undo ``ensure_pool`` (or what a failed test left of a stack's pool): stop and undefine the pool if it is still
    defined, and remove its directory if it is empty (crane leaves the directory of a pool it adopted after a crash,
    as it cannot tell that it made it)."""
    pool = lookup_pool(conn, name)  # None: not defined (any more)
    if pool is not None:
        drop_pool(pool)
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass


def http_get(address: str, path: str = "/", timeout: float = 60.0) -> str:
    """GET http://address/path once the guest answers it (it may still be booting), trying for ``timeout`` seconds."""
    last: list[OSError] = []

    def answer() -> tuple[str, ...]:  # the body in a tuple, as a body may be empty; () for no answer yet
        try:
            with urllib.request.urlopen(f"http://{address}{path}", timeout=3) as response:
                return (str(response.read().decode()),)
        except OSError as exc:
            last[:] = [exc]
            return ()

    return wait_until(answer, timeout, f"an answer from http://{address}{path}", every=0.5,
                      detail=lambda: last[0] if last else "no try finished")[0]


def dnsmasq_for(network: str) -> list[str]:
    """Live (not zombie) dnsmasq processes serving ``network``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "dnsmasq" in cmdline and f"/{network}.conf" in cmdline:
            found.append(cmdline)
    return found


def write_tinyweb(root: Path, *, prefix: str, subnet: str, web_count: int, real: bool = True,
                  mode: str = "open", kernel: Path = GUEST_DIR / "vmlinuz", initrd: Path = GUEST_DIR / "initrd.img",
                  address_timeout: float = 120, shutdown_timeout: float = 30) -> None:
    """A crane project at ``root`` running the repository's stacks/tinyweb.py on the real host or the sandbox."""
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "stacks" / "tinyweb.py", root / "stacks" / "tinyweb.py")
    host_lines = (f'uri = "{REAL_URI}"\ndomain_type = "qemu"\naddress_timeout = {address_timeout}\n'
                  f'shutdown_timeout = {shutdown_timeout}') if real else ""
    (root / "crane.toml").write_text(f"""
[stacks.web]
file = "stacks/tinyweb.py"
{host_lines}

[stacks.web.vars]
prefix = {{ type = "str", default = "{prefix}" }}
web_count = {{ type = "int", default = {web_count} }}
vcpus = {{ type = "int", default = 1 }}
memory_mib = {{ type = "int", default = 128 }}
autostart = {{ type = "bool", default = false }}
subnet = {{ type = "str", default = "{subnet}" }}
mode = {{ type = "str", default = "{mode}" }}
pool_dir = {{ type = "str", default = "{tinyweb_pool_dir(prefix)}" }}
kernel = {{ type = "str", default = "{kernel}" }}
initrd = {{ type = "str", default = "{initrd}" }}
cmdline = {{ type = "str", default = "console=ttyS0" }}
""")
