"""Disk images opened without booting them, on the host crane runs on (as root), for a VM template's build: the
diskimage-builder and virt-customize way, as this machine's QEMU emulates in software and a guest image need have
neither sshd nor Python (docs/decisions/templates.md).

* the template's disk is a qcow2 overlay whose backing file is its base (``qemu-img create -b BASE -F FMT``): the
  base is never written;
* the overlay is exported as a raw block device onto a file by ``qemu-storage-daemon --export type=fuse`` (no nbd
  module is needed), and its root file system is loop-mounted from that file: the whole disk, or one partition at
  its offset (``root_extent``);
* the playbook then runs in a chroot of that mount, with ``/proc``, ``/sys`` and ``/dev`` from the host and tmpfs on
  ``/tmp`` and ``/run`` (where the image has those directories), so that nothing a task leaves there is saved.

Each build works in a **workspace** ``/run/crane/images/<template>/``: the export file, the daemon's PID file, the
mount point, and the PID (with its start time) of the crane that owns it. A crane killed mid-build leaves its
workspace behind; the next build releases every workspace whose owner is gone (``sweep``): processes still in the
chroot are killed, the mounts and loop devices released, the daemon stopped, and the half-built template's
directory (never listed: its name starts with a dot) removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crane_iac.templates.library import TemplateError

RUN_DIR = Path("/run/crane/images")
#: the formats a base may have: what QEMU's own drivers open without conversion
FORMATS = ("qcow2", "raw")
#: partition types that hold a Linux file system: MBR 0x83, GPT's Linux file system and x86-64 root GUIDs
LINUX_TYPES = frozenset({"0x83", "0fc63daf-8483-4772-8e79-3d69d8477de4", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"})
#: what partx assumes for an image file, and what crane asks for so that offsets are certain
SECTOR = 512
#: the host's file systems a build's chroot gets (only where the image has the directory: none is made)
API_MOUNTS = (("proc", ("-t", "proc", "proc")), ("sys", ("-t", "sysfs", "sysfs")), ("dev", ("--bind", "/dev")),
              ("tmp", ("-t", "tmpfs", "tmpfs")), ("run", ("-t", "tmpfs", "tmpfs")))
_STOP_TIMEOUT = 30.0


def _run(*argv: str, what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TemplateError(f"{what} failed: {' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says of an image."""

    format: str
    virtual_size: int
    backing: str | None = None


def info(path: Path) -> ImageInfo:
    """The format and virtual size of the image at ``path`` (read with ``--force-share``: a running VM may use it)."""
    if not path.is_file():
        raise TemplateError(f"base {str(path)!r} is not an image file on this host")
    data = json.loads(_run("qemu-img", "info", "--force-share", "--output=json", str(path),
                           what=f"reading the image {path}"))
    return ImageInfo(str(data["format"]), int(data["virtual-size"]), data.get("full-backing-filename"))


def make_overlay(overlay: Path, base: Path, base_format: str) -> None:
    """A qcow2 image at ``overlay`` backed by ``base`` (its path recorded as given: absolute), of the base's size."""
    if base_format not in FORMATS:
        raise TemplateError(f"base {base} is a {base_format} image; a VM template is built on a qcow2 or raw image "
                            f"(convert it first: qemu-img convert -O qcow2 {base} base.qcow2)")
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", base_format, str(overlay),
         what="making the template's overlay")


@dataclass(frozen=True)
class Partition:
    """One entry of a disk's partition table, as partx lists it (start and size in 512-byte sectors)."""

    number: int
    start: int
    sectors: int
    type: str
    scheme: str


def parse_partitions(text: str) -> list[Partition]:
    """partx's ``--raw --output NR,START,SECTORS,TYPE,SCHEME`` listing (its heading line first)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 5:
            found.append(Partition(int(fields[0]), int(fields[1]), int(fields[2]), fields[3].lower(), fields[4]))
    return found


def root_extent(probe: dict[str, str], partitions: list[Partition], what: str) -> tuple[int, int | None]:
    """Where the root file system is on the disk (``probe``: what ``blkid -p`` found on the whole disk): ``(offset,
    size)`` in bytes, size None for the rest of the disk.

    A whole-disk file system is used as it is. On a partitioned disk (MBR or GPT) the largest partition of a Linux
    file system type is the root (Debian's and Ubuntu's cloud images: partition 1 beside the BIOS boot and EFI
    ones). Anything else is refused: a disk without a file system, LVM, an encrypted volume, a table without a
    Linux partition."""
    if probe.get("USAGE") == "filesystem":
        return 0, None
    if probe.get("USAGE") in ("raid", "crypto"):
        raise TemplateError(f"{what} holds {probe.get('TYPE', probe['USAGE'])} on the whole disk: a VM template is "
                            "built on a disk whose root is a plain file system (whole disk or one partition)")
    if "PTTYPE" not in probe:
        raise TemplateError(f"{what} holds neither a file system nor a partition table crane recognises")
    linux = [p for p in partitions if p.type in LINUX_TYPES]
    if not linux:
        types = ", ".join(f"{p.number}: {p.type}" for p in partitions) or "none"
        raise TemplateError(f"{what} has a {probe['PTTYPE']} partition table with no Linux file system partition "
                            f"(partitions {types}); LVM and other layouts are not supported")
    root = max(linux, key=lambda p: (p.sectors, -p.number))
    return root.start * SECTOR, root.sectors * SECTOR


def _probe(raw: Path) -> dict[str, str]:
    done = subprocess.run(["blkid", "-p", "-o", "export", str(raw)], capture_output=True, text=True, check=False)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _partitions(raw: Path) -> list[Partition]:
    done = subprocess.run(["partx", "--raw", "--sector-size", str(SECTOR), "--output", "NR,START,SECTORS,TYPE,SCHEME",
                           str(raw)], capture_output=True, text=True, check=False)
    return parse_partitions(done.stdout) if done.returncode == 0 else []


def _mounts() -> list[str]:
    """The mount points of crane's mount namespace, in the order they were mounted."""
    return [line.split()[4].encode().decode("unicode_escape")
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), which tells it from a later one given the same PID."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: str) -> bool:
    pid, _, started = owner.partition(" ")
    return pid.isdigit() and _start_time(int(pid)) == started


class Workspace:
    """A build's workspace (see the module): the daemon, the mounts and the half-built template it holds."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.export = top / "export.raw"
        self.pidfile = top / "daemon.pid"
        self.root = top / "root"

    @classmethod
    def claim(cls, name: str, partial: Path) -> Workspace:
        """The workspace of template ``name``'s build, owned by this process; one a running build holds is refused,
        one a killed build left is released first."""
        space = cls(RUN_DIR / name)
        owner = space._read("owner")
        if owner and _alive(owner):
            raise TemplateError(f"template {name!r} is being built by process {owner.split()[0]}; wait for it, or "
                                "kill it and build again")
        space.release(abandon=True)
        space.top.mkdir(parents=True)
        (space.top / "partial").write_text(str(partial))
        (space.top / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        return space

    def _read(self, name: str) -> str:
        try:
            return (self.top / name).read_text().strip()
        except OSError:
            return ""

    def expose(self, disk: Path) -> Path:
        """Export ``disk`` (qcow2) as a raw block device onto the workspace's export file; that file."""
        self.export.touch()
        _run("qemu-storage-daemon", "--daemonize", "--pidfile", str(self.pidfile),
             "--blockdev", f"driver=file,node-name=file,filename={_option(disk)}",
             "--blockdev", "driver=qcow2,node-name=disk,file=file",
             "--export", f"type=fuse,id=disk,node-name=disk,mountpoint={_option(self.export)},writable=on",
             what=f"exporting {disk} (qemu-storage-daemon)")
        return self.export

    def mount_root(self, what: str) -> Path:
        """The root file system of the exported disk, loop-mounted read-write at the workspace's ``root``."""
        offset, size = root_extent(_probe(self.export), _partitions(self.export), what)
        options = f"loop,offset={offset}" + (f",sizelimit={size}" if size is not None else "")
        self.root.mkdir(exist_ok=True)
        _run("mount", "-o", options, str(self.export), str(self.root), what=f"mounting the root file system of {what}")
        return self.root

    def mount_api(self) -> None:
        """The host's /proc, /sys and /dev and tmpfs /tmp and /run in the chroot, where the image has them."""
        for name, how in API_MOUNTS:
            target = self.root / name
            if target.is_dir() and not target.is_symlink():
                _run("mount", *how, str(target), what=f"mounting /{name} in the build's chroot")

    def release_api(self) -> None:
        """Unmount what ``mount_api`` mounted (and anything a task mounted under the root), deepest first."""
        self._kill_chrooted()
        prefix = f"{self.root}/"
        for point in reversed(_mounts()):
            if point.startswith(prefix):
                _run("umount", point, what=f"unmounting {point}")

    def release(self, *, abandon: bool = False) -> None:
        """Everything the workspace holds, whatever state a build left it in, and the workspace itself; with
        ``abandon`` (a killed build's) the half-built template it names too."""
        if not self.top.is_dir():
            return
        if str(self.root) in _mounts():
            self.release_api()
            _run("umount", str(self.root), what=f"unmounting {self.root}")
        # a loop mount frees its device when unmounted; one left attached (a mount that failed half-way) goes here
        listed = subprocess.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(self.export)],
                                capture_output=True, text=True, check=False).stdout
        for device in listed.split():
            subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)
        self._stop_daemon()
        if str(self.export) in _mounts():  # a daemon killed outright leaves its FUSE mount
            _run("umount", str(self.export), what=f"unmounting {self.export}")
        partial = self._read("partial")
        if abandon and partial and Path(partial).name.startswith("."):
            shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(self.top, ignore_errors=True)

    def _kill_chrooted(self) -> None:
        """Processes whose root is the build's chroot (a task's leftover daemon, or a killed build's task)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "root") == str(self.root):
                        os.kill(int(entry.name), signal.SIGKILL)
        _wait(lambda: not any(_rooted_at(p, self.root) for p in Path("/proc").iterdir() if p.name.isdigit()),
              "the processes in the build's chroot to end")

    def _stop_daemon(self) -> None:
        text = self._read("daemon.pid")
        if not text.isdigit():
            return
        pid = int(text)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"qemu-storage-daemon" not in cmdline or str(self.top).encode() not in cmdline:
            return  # the PID went to another process since
        os.kill(pid, signal.SIGTERM)  # the daemon unmounts its export and exits
        _wait(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), f"qemu-storage-daemon {pid} to stop")


def _rooted_at(proc: Path, root: Path) -> bool:
    try:
        return os.readlink(proc / "root") == str(root)
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise TemplateError(f"gave up waiting {_STOP_TIMEOUT:.0f} s for {what}")
        time.sleep(0.05)


def _option(path: Path) -> str:
    """A path as a QEMU option value (a comma is doubled)."""
    return str(path).replace(",", ",,")


def sweep() -> list[str]:
    """Release the workspaces whose builds were killed (their owner is gone); the templates they were building."""
    released = []
    for top in sorted(RUN_DIR.iterdir()) if RUN_DIR.is_dir() else []:
        space = Workspace(top)
        owner = space._read("owner")
        if not owner or not _alive(owner):
            space.release(abandon=True)
            released.append(top.name)
    return released
