"""Pre-flight checks: what libvirt would refuse only when apply gets there, found before anything changes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from crane_iac.objects import Live
from crane_iac.providers.libvirt import images
from crane_iac.providers.libvirt.host import Host
from crane_iac.providers.libvirt.validation import UNSAFE_ENV


class Checks:
    """Problems with what a plan creates or updates, judged against what the last ``read_all`` found and the pools
    the same plan creates."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._pool_names: set[str] | None = None  # known after read_all
        self._pool_paths: dict[str, str] = {}  # pool name → directory, known after read_all
        # A volume may live in a pool the same plan creates. The engine checks a plan's changes in dependency order,
        # and a volume given its StoragePool depends on it, so the pool's check comes first and notes its name here.
        # A volume naming such a pool by a string has no dependency on it (nothing orders the two at apply either):
        # it passes only if its check happens to come after the pool's.
        self._planned_pools: set[str] = set()
        self._path_exists: dict[str, bool] = {}
        self._host_mib: int | None = None  # the host's memory, read once
        self._planned = (0, 0)  # the guests this plan makes or changes: how many, and the MiB they ask for

    def learn(self, lives: Iterable[Live]) -> None:
        """Take note of the pools a bulk read found."""
        pools = [live for live in lives if live.kind == "pool"]
        self._pool_names = {live.physical for live in pools}
        self._pool_paths = {live.physical: live.properties["path"] or "" for live in pools}
        self._planned = (0, 0)  # a new plan

    def problems(self, kind: str, properties: dict[str, Any]) -> list[str]:
        """Kernel files and pools the host lacks, a pool on a directory another pool holds, and a volume's source
        image (read where crane uploads it from) that is missing, of another format, or larger than its capacity."""
        problems = []
        uri = self.host.uri
        if kind == "pool":
            problems.extend(self._pool(properties))
        pools = (self._pool_names or set()) | self._planned_pools
        if kind in ("volume", "cloudinit") and self._pool_names is not None and properties["pool"] not in pools:
            problems.append(f"storage pool {properties['pool']!r} does not exist on {uri}; declare it "
                            f"(StoragePool({properties['pool']!r}, path=<directory>), passed to the volume as pool=), "
                            f"define and start it (virsh pool-define-as {properties['pool']} dir --target "
                            f"<directory>), or use one of: {', '.join(sorted(self._pool_names)) or 'none'}")
        if kind == "volume" and properties.get("source"):
            problems.extend(images.problems(properties["source"], properties.get("format"),
                                            properties.get("capacity_gib")))
        if kind in ("vm", "container"):
            problems.extend(self._driver(kind))
            problems.extend(self._memory(kind, properties))
        if kind == "container":
            # an output's value is known only now: what the stack's own check could not see
            unsafe = sorted(name for name, value in properties["init_env"].items()
                            if isinstance(value, str) and UNSAFE_ENV.search(value))
            if unsafe:
                problems.append(f"init_env {', '.join(unsafe)}: libvirt 9.0 writes these values into its XML "
                                "unescaped, so '<' and '&' break it; pass such a value in a file instead")
        if kind == "vm" and self.host.local:
            for field in ("kernel", "initrd"):
                path = properties.get(field)
                if isinstance(path, str) and not self._is_file(path):
                    problems.append(f"{field} {path!r} is not a file on this host; QEMU could not boot it")
        if kind == "container" and self.host.local:
            problems.extend(self._container(properties))
        return problems

    def planned(self, kind: str, properties: dict[str, Any]) -> None:
        """Take note of an object the plan makes through another endpoint of this daemon: a pool's name."""
        if kind == "pool":
            self._planned_pools.add(properties["name"])

    def _driver(self, kind: str) -> list[str]:
        """A VM needs a hypervisor that boots machines, a container libvirt's LXC driver (the sandbox runs both)."""
        driver, uri = self.host.driver, self.host.uri
        if kind == "container" and driver not in ("lxc", "test"):
            return [f"{uri} runs {driver} guests, not containers: declare an endpoint with uri = \"lxc:///system\" in "
                    "crane.toml ([stacks.<stack>.providers.<name>]) and give the container provider=\"<name>\""]
        if kind == "vm" and driver == "lxc":
            return [f"{uri} runs containers, not VMs: give the VM an endpoint with a qemu:// uri (provider=...), or "
                    "declare a Container instead"]
        return []

    def _memory(self, kind: str, p: dict[str, Any]) -> list[str]:
        """A guest that takes the memory this plan's guests ask for together past the host's (libvirt's node
        info): each guest checked while the sum is over is reported, so the last one names the whole sum. Guests
        the plan leaves as they are, and other stacks' guests, are not counted: the check refuses a stack that
        could never fit, not one that is merely crowded."""
        memory = p.get("memory_mib")
        if not isinstance(memory, int):
            return []
        count, total = self._planned[0] + 1, self._planned[1] + memory  # a running sum: 10,000 guests are O(n)
        self._planned = (count, total)
        if self._host_mib is None:
            self._host_mib = int(self.host.conn.getInfo()[1])
        if total <= self._host_mib:
            return []
        return [f"memory_mib: this {kind}'s {memory} MiB takes the memory of the {count} guest(s) "
                f"this plan makes or changes on {self.host.uri} to {total} MiB, more than the host's "
                f"{self._host_mib} MiB; lower memory_mib, make fewer guests, or put some on another endpoint"]

    def _container(self, p: dict[str, Any]) -> list[str]:
        """What libvirt_lxc would fail on at start: the root, the init program, and mount points that cannot be made
        in a read-only root (each must exist in it, or lie under a tmpfs or a mount mounted first)."""
        root = p["root"]
        if not os.path.isdir(root):
            return [f"root {root!r} is not a directory on this host"]
        problems: list[str] = []
        if p.get("template"):
            return problems  # its template may add the init program and the mount points: the provider checks it
        init = p["init"][0] if p["init"] else ""
        program = os.path.join(root, init.lstrip("/"))
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            problems.append(f"init program {init!r} is not an executable file in the container's root {root!r}")
        made = sorted([*p["writable"], *p["mounts"]])
        for target in made:
            under = any(target.startswith(other.rstrip("/") + "/") for other in made if other != target)
            if not under and not os.path.isdir(os.path.join(root, target.lstrip("/"))):
                problems.append(f"mount point {target!r} is not a directory in the container's root {root!r}, which "
                                "is read-only; create it there, or add a parent directory to writable=")
        return problems

    def _pool(self, properties: dict[str, Any]) -> list[str]:
        """A pool's own problems; notes it as one the plan creates."""
        problems = []
        path = properties["path"]
        self._planned_pools.add(properties["name"])
        holder = next((name for name, held in self._pool_paths.items()
                       if held == path and name != properties["name"]), None)
        if holder is not None:
            problems.append(f"directory {path!r} is already the storage pool {holder!r} on {self.host.uri}; "
                            "libvirt allows one pool per directory")
        if self.host.local and os.path.exists(path) and not os.path.isdir(path):
            problems.append(f"path {path!r} exists on this host and is not a directory")
        return problems

    def _is_file(self, path: str) -> bool:
        if path not in self._path_exists:
            self._path_exists[path] = os.path.isfile(path)
        return self._path_exists[path]
