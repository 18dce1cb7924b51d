"""The real hypervisor: libvirtd with QEMU (qemu:///system) and LXC (lxc:///system) on this machine, tiny guests that
really boot, and containers that run this machine's own programs.

``scripts/realhost.sh start`` installs and starts what is missing (root only) and leaves a running libvirtd alone;
the session ends with ``scripts/realhost.sh stop``, which undoes exactly what that start did (its own state
directory). The gate is honest: as root, and always under ``CI=true``, a real hypervisor that cannot be had fails
every test here with the reason and the daemon log's last lines; only a non-root user whom no libvirtd answers
gets a skip, whose reason says so. stacks/tinyweb.py declares its own storage pool: crane makes and removes it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import REPO, ProjectDir
from tests.real.host import GUEST_DIR, LXC_URI, REAL_URI, LxcHost, RealHost, write_tinyweb


def must_run() -> bool:
    """Where the real-hypervisor tests may not skip: as root, and in CI."""
    return os.geteuid() == 0 or os.environ.get("CI", "").lower() in ("true", "1")


def realhost(verb: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "realhost.sh"), verb], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "CRANE_REALHOST_STATE": str(state)})


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """libvirtd with the QEMU and LXC drivers, started once for the session by scripts/realhost.sh and stopped by it
    at the end (a daemon that was running already is used as it is)."""
    state = tmp_path_factory.mktemp("realhost")
    started = realhost("start", state)
    if started.returncode != 0:
        why = (started.stdout + started.stderr).strip()
        if started.returncode == 3 and not must_run():
            pytest.skip(f"no real hypervisor for this user: {why}")
        pytest.fail(f"scripts/realhost.sh start failed (exit {started.returncode}); the real-hypervisor tests must "
                    f"run {'as root' if os.geteuid() == 0 else 'under CI'}:\n{why}", pytrace=False)
    try:
        yield
    finally:
        realhost("stop", state)


@pytest.fixture(scope="session")
def real_host(libvirtd: None) -> Iterator[RealHost]:
    """qemu:///system, and the test guest's kernel and initramfs."""
    built = subprocess.run(["bash", str(REPO / "tests" / "guest" / "build.sh"), str(GUEST_DIR)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    conn = libvirt.open(REAL_URI)
    try:
        yield RealHost(conn, GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.img")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def lxc_host(libvirtd: None) -> Iterator[LxcHost]:
    """lxc:///system: libvirt's LXC driver on the same daemon (real containers need root; as root it must answer)."""
    try:
        conn = libvirt.open(LXC_URI)
    except libvirt.libvirtError as exc:
        why = f"{LXC_URI} does not answer: {exc.get_error_message()}"
        if not must_run():
            pytest.skip(f"no LXC driver for this user (containers need root): {why}")
        pytest.fail(f"{why}; scripts/realhost.sh starts libvirtd with it (is a libvirtd without the LXC driver "
                    "running already?)", pytrace=False)
    try:
        yield LxcHost(conn)
    finally:
        conn.close()


def tinyweb_project(root: Path, host: RealHost, *, prefix: str, subnet: str, web_count: int = 2,
                    real: bool = True, mode: str = "open") -> ProjectDir:
    """A project running the repository's stacks/tinyweb.py on the real host (or on the sandbox)."""
    write_tinyweb(root, prefix=prefix, subnet=subnet, web_count=web_count, real=real, mode=mode, kernel=host.kernel,
                  initrd=host.initrd, address_timeout=90,
                  # the test guest has no ACPI daemon: it never shuts down when asked, so do not wait long
                  shutdown_timeout=3)
    return ProjectDir(root)
