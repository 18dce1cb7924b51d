"""The real hypervisor: libvirtd with QEMU on this machine (qemu:///system), and tiny guests that really boot.

``scripts/realhost.sh start`` installs and starts what is missing (root only) and leaves a running libvirtd alone;
the session ends with ``scripts/realhost.sh stop``, which stops only what it started. Without root or QEMU every
test here is skipped with that reason; nothing else in the suite depends on them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.conftest import REPO, ProjectDir

REAL_URI = "qemu:///system"
GUEST_DIR = Path(os.environ.get("CRANE_GUEST_DIR", "/var/cache/crane/guest"))
POOL = "crane-test"
POOL_DIR = Path("/var/lib/crane-test/pool")


@dataclass
class RealHost:
    conn: libvirt.virConnect
    kernel: Path
    initrd: Path

    def names(self, prefix: str) -> dict[str, list[str]]:
        """Everything on the host whose name starts with ``prefix``: domains, networks, volumes in the test pool."""
        pool = self.conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
        return {
            "domains": sorted(d.name() for d in self.conn.listAllDomains(0) if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in self.conn.listAllNetworks(0) if n.name().startswith(prefix)),
            "volumes": sorted(v.name() for v in pool.listAllVolumes(0) if v.name().startswith(prefix)),
        }

    def sweep(self, prefix: str) -> None:
        """Remove what a failed test left behind, so the next run starts clean."""
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
        pool = self.conn.storagePoolLookupByName(POOL)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(prefix):
                vol.delete(0)


def _ignore(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is registered; the tests check errors themselves."""


libvirt.registerErrorHandler(_ignore, None)


def _ensure_pool(conn: libvirt.virConnect) -> None:
    try:
        pool = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{POOL}</name><target><path>{POOL_DIR}</path></target></pool>", 0)
    if not pool.isActive():
        pool.create(0)


@pytest.fixture(scope="session")
def real_host() -> Iterator[RealHost]:
    started = subprocess.run([str(REPO / "scripts" / "realhost.sh"), "start"], capture_output=True, text=True,
                             timeout=900)
    if started.returncode == 3:
        pytest.skip(f"no real hypervisor here: {started.stdout.strip()}")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        built = subprocess.run(["bash", str(REPO / "tests" / "guest" / "build.sh"), str(GUEST_DIR)],
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr
        conn = libvirt.open(REAL_URI)
        _ensure_pool(conn)
        yield RealHost(conn, GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.img")
        conn.close()
    finally:
        subprocess.run([str(REPO / "scripts" / "realhost.sh"), "stop"], timeout=120)


def tinyweb_project(root: Path, host: RealHost, *, prefix: str, subnet: str, web_count: int = 2,
                    real: bool = True, mode: str = "open") -> ProjectDir:
    """A project running the repository's stacks/tinyweb.py on the real host (or on the sandbox)."""
    project = ProjectDir(root)
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "stacks" / "tinyweb.py", root / "stacks" / "tinyweb.py")
    host_lines = f'uri = "{REAL_URI}"\ndomain_type = "qemu"\naddress_timeout = 90' if real else ""
    project.write_config(textwrap.dedent("""
        [stacks.web]
        file = "stacks/tinyweb.py"
        {host_lines}

        [stacks.web.vars]
        prefix = {{ type = "str", default = "{prefix}" }}
        web_count = {{ type = "int", default = {web_count} }}
        memory_mib = {{ type = "int", default = 128 }}
        subnet = {{ type = "str", default = "{subnet}" }}
        mode = {{ type = "str", default = "{mode}" }}
        pool = {{ type = "str", default = "{pool}" }}
        kernel = {{ type = "str", default = "{kernel}" }}
        initrd = {{ type = "str", default = "{initrd}" }}
        cmdline = {{ type = "str", default = "console=ttyS0" }}
    """).format(host_lines=host_lines, prefix=prefix, web_count=web_count, subnet=subnet, mode=mode,
                pool=POOL if real else "default", kernel=host.kernel, initrd=host.initrd))
    return project


def http_get(address: str, path: str = "/", timeout: float = 60.0) -> str:
    """GET http://address/path, retrying until the guest answers or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}{path}", timeout=3) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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
