"""The real hypervisor: libvirtd with QEMU on this machine (qemu:///system), and tiny guests that really boot.

``scripts/realhost.sh start`` installs and starts what is missing (root only) and leaves a running libvirtd alone;
the session ends with ``scripts/realhost.sh stop``, which stops only what it started. Without root or QEMU every
test here is skipped with that reason; nothing else in the suite depends on them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import REPO, ProjectDir
from tests.real.host import GUEST_DIR, POOL, REAL_URI, RealHost, ensure_pool, write_tinyweb


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
        ensure_pool(conn)
        yield RealHost(conn, GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.img")
        conn.close()
    finally:
        subprocess.run([str(REPO / "scripts" / "realhost.sh"), "stop"], timeout=120)


def tinyweb_project(root: Path, host: RealHost, *, prefix: str, subnet: str, web_count: int = 2,
                    real: bool = True, mode: str = "open") -> ProjectDir:
    """A project running the repository's stacks/tinyweb.py on the real host (or on the sandbox)."""
    write_tinyweb(root, prefix=prefix, subnet=subnet, web_count=web_count, pool=POOL if real else "default",
                  real=real, mode=mode, kernel=host.kernel, initrd=host.initrd, address_timeout=90,
                  # the test guest has no ACPI daemon: it never shuts down when asked, so do not wait long
                  shutdown_timeout=3)
    return ProjectDir(root)
