"""What the real-host benchmarks leave behind, swept by name prefix (bench/appdomain.py, bench/jobs.py)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import libvirt


def sweep(uri: str, prefix: str) -> list[str]:
    """Destroys whatever is left on ``uri`` under ``prefix`` (domains, networks, pools with their volumes and
    directories, libvirt_lxc's logs): a failed `crane destroy` or baseline teardown leaves nothing behind. Returns
    what it removed."""
    removed = []
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
                removed.append(f"domain {dom.name()}")
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                net.undefine()
                removed.append(f"network {net.name()}")
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                if not pool.isActive():
                    pool.create()
                pool.refresh()
                for vol in pool.listAllVolumes():
                    if Path(vol.path()).is_dir():
                        shutil.rmtree(vol.path(), ignore_errors=True)
                    else:
                        vol.delete()
                pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.delete()
                pool.undefine()
                removed.append(f"pool {pool.name()}")
    finally:
        conn.close()
    for log in Path("/var/log/libvirt/lxc").glob(f"{prefix}*.log"):
        log.unlink()
    return removed
