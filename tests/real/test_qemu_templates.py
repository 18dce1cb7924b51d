"""VM templates on the real host: a disk image (ext4 holding busybox, as the test guest's initramfs has it) customised
by a playbook of ``raw`` tasks in a chroot of its file system, without booting it, into a qcow2 overlay backed by the
image; the same on a partitioned disk; a failing playbook and a SIGKILLed build leave nothing; and a stack's VM on a
volume from the template applies on qemu:///system (QEMU opens the backing chain). The tests of this module run in
order on one project; the library (the pool crane-templates, at /var/lib/cqt-templates where QEMU's user reaches it)
is made for it and removed at the end."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.templates import images
from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.real.host import GUEST_DIR, REAL_URI, RealHost, lookup_pool, remove_pool
from tests.waiting import wait_until

PREFIX = "cqt-"
LIBRARY = "crane-templates"
LIBRARY_DIR = Path(f"/var/lib/{PREFIX}templates")
BASES = Path(f"/var/lib/{PREFIX}bases")
POOL_DIR = Path(f"/var/lib/{PREFIX}pool")
BASE = BASES / "base.qcow2"
PARTITIONED = BASES / "partitioned.qcow2"
#: the disk's size, and where the partitioned disk's one partition starts
DISK_MIB, PART_OFFSET = 64, 1 << 20
PLAYBOOK = """
- hosts: all
  tasks:
    - name: write the file
      ansible.builtin.raw: mkdir -p /etc/cqt && echo "hello from {{ who }}" > /etc/cqt/hello
    - name: scratch in /tmp (a tmpfs during the build)
      ansible.builtin.raw: echo scratch > /tmp/scratch
"""
FAILING = """
- hosts: all
  tasks:
    - name: a command that fails
      ansible.builtin.raw: exit 3
"""
SLOW = """
- hosts: all
  tasks:
    - name: mark and wait
      ansible.builtin.raw: touch /building && sleep 600
"""
STACK = f"""
from crane_iac import VM, StoragePool, Volume

pool = StoragePool("{PREFIX}pool", path="{POOL_DIR}")
root = Volume("{PREFIX}root", pool=pool, template="{PREFIX}img")
VM("{PREFIX}vm", vcpus=1, memory_mib=128, volumes=[root], kernel="{GUEST_DIR}/vmlinuz",
   initrd="{GUEST_DIR}/initrd.img", cmdline="console=ttyS0")
"""


def make_bases() -> None:
    """An ext4 file system on the whole disk, and one in the first (MBR) partition, each holding busybox."""
    BASES.mkdir(parents=True, exist_ok=True)
    tree = BASES / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for name in ("bin", "etc", "tmp", "proc", "sys", "dev", "run"):
        (tree / name).mkdir(parents=True)
    with open(GUEST_DIR / "initrd.img", "rb") as initrd:
        unzipped = subprocess.run(["gzip", "-dc"], stdin=initrd, capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-id", "--quiet", "bin/busybox"], input=unzipped, cwd=tree, check=True)
    for tool in ("sh", "cat", "echo", "mkdir", "touch", "sleep"):
        (tree / "bin" / tool).symlink_to("busybox")
    for image, offset in ((BASE, 0), (PARTITIONED, PART_OFFSET)):
        raw = image.with_suffix(".raw")
        raw.unlink(missing_ok=True)
        with open(raw, "wb") as disk:
            disk.truncate(DISK_MIB << 20)
        fs_mib = DISK_MIB - offset // (1 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={offset}", str(raw), f"{fs_mib}M"],
                       check=True)
        if offset:
            with open(raw, "r+b") as disk:  # one Linux partition (0x83) from 1 MiB to the end
                disk.seek(446)
                disk.write(struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", offset // 512,
                                       (DISK_MIB << 20) // 512 - offset // 512))
                disk.seek(510)
                disk.write(b"\x55\xaa")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
        raw.unlink()
    shutil.rmtree(tree)


def read_file(image: Path, path: str, offset: int = 0) -> str | None:
    """A file of the ext4 file system at ``offset`` in a qcow2 image (its whole backing chain), or None."""
    raw = image.with_name(f"{image.name}.read.raw")
    try:
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)], check=True)
        if offset:
            with open(raw, "rb") as whole, open(raw.with_suffix(".fs"), "wb") as fs:
                whole.seek(offset)
                shutil.copyfileobj(whole, fs)
            raw.unlink()
            raw.with_suffix(".fs").rename(raw)
        done = subprocess.run(["debugfs", "-R", f"cat {path}", str(raw)], capture_output=True, text=True)
        return done.stdout if done.returncode == 0 and "File not found" not in done.stderr else None
    finally:
        raw.unlink(missing_ok=True)


def daemons() -> list[str]:
    """The command lines of the qemu-storage-daemons exporting this module's builds."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith("qemu-storage-daemon") and f"images/{PREFIX}" in cmdline:
                found.append(cmdline)
    return found


def leftovers() -> dict[str, object]:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if f"/images/{PREFIX}" in line]
    return {"workspaces": sorted(p.name for p in images.RUN_DIR.glob(f"{PREFIX}*")), "mounts": mounts,
            "daemons": daemons(), "partial": sorted(p.name for p in LIBRARY_DIR.glob(f".{PREFIX}*"))}


NOTHING_LEFT = {"workspaces": [], "mounts": [], "daemons": [], "partial": []}


def sweep(conn: libvirt.virConnect, real_host: RealHost) -> None:
    """What a failed run left: the domain, the stack's pool, the builds' workspaces, the library and the bases."""
    real_host.sweep(PREFIX)
    for space in images.RUN_DIR.glob(f"{PREFIX}*"):
        images.Workspace(space).release(abandon=True)
    pool = lookup_pool(conn, LIBRARY)
    if pool is not None:
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    shutil.rmtree(LIBRARY_DIR, ignore_errors=True)
    shutil.rmtree(BASES, ignore_errors=True)
    remove_pool(conn, f"{PREFIX}pool", POOL_DIR)


@pytest.fixture(scope="module")
def project(real_host: RealHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    sweep(real_host.conn, real_host)
    pool = real_host.conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{LIBRARY}</name><target><path>{LIBRARY_DIR}</path></target></pool>", 0)
    pool.build(0)
    pool.create(0)
    make_bases()
    p = ProjectDir(tmp_path_factory.mktemp("qemu-templates"))
    p.write_config(f'[stacks.main]\nfile = "stacks/main.py"\nuri = "{REAL_URI}"\ndomain_type = "qemu"\n'
                   "shutdown_timeout = 2\n")
    for name, text in (("site.yml", PLAYBOOK), ("failing.yml", FAILING), ("slow.yml", SLOW)):
        (p.root / name).write_text(text)
    try:
        yield p
        p.crane("destroy", "--auto-approve")
    finally:
        sweep(real_host.conn, real_host)
        for directory in (images.RUN_DIR, images.RUN_DIR.parent):  # as the machine had them: empty ones go
            with contextlib.suppress(OSError):
                directory.rmdir()


def build(project: ProjectDir, name: str, base: str, playbook: str = "site.yml") -> str:
    return ok(project, "template", "build", name, "--from", base, "--playbook", playbook, "--var", "who=the template",
              "--uri", REAL_URI)


def test_a_playbook_builds_a_vm_template_on_a_disk_image(project: ProjectDir) -> None:
    built = build(project, f"{PREFIX}img", str(BASE))
    assert "write the file: changed" in built and "vm template built on" in built, built
    disk = LIBRARY_DIR / f"{PREFIX}img" / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True,
                                     text=True, check=True).stdout)
    assert (info["format"], info["backing-filename"], info["backing-filename-format"]) == ("qcow2", str(BASE), "qcow2")
    assert read_file(disk, "/etc/cqt/hello") == "hello from the template\n"
    assert read_file(BASE, "/etc/cqt/hello") is None  # the base is never written
    assert read_file(disk, "/tmp/scratch") is None  # /tmp was a tmpfs during the build
    shown = json.loads(ok(project, "template", "show", f"{PREFIX}img", "--uri", REAL_URI, "--json"))
    manifest = shown["manifest"]
    assert manifest["kind"] == "vm" and manifest["base"]["kind"] == "image" and manifest["base"]["ref"] == str(BASE)
    assert manifest["variables"] == {"who": "the template"} and manifest["disk_bytes"] == DISK_MIB << 20
    assert manifest["content_digest"].startswith("sha256:") and manifest["base"]["digest"].startswith("sha256:")
    assert shown["lineage"] == [f"{PREFIX}img"] and shown["stale"] is None
    text = ok(project, "template", "show", f"{PREFIX}img", "--uri", REAL_URI)
    assert f"  {PREFIX}img ← built on image {BASE} (sha256:" in text and f"backed by {BASE})" in text, text
    assert leftovers() == NOTHING_LEFT


def test_a_second_build_on_the_unchanged_base_has_the_same_content_digest(project: ProjectDir) -> None:
    build(project, f"{PREFIX}again", str(BASE))

    def digest(name: str) -> str:
        shown = json.loads(ok(project, "template", "show", name, "--uri", REAL_URI, "--json"))
        return str(shown["manifest"]["content_digest"])

    assert digest(f"{PREFIX}again") == digest(f"{PREFIX}img")
    ok(project, "template", "rm", f"{PREFIX}again", "--uri", REAL_URI)


def test_a_template_on_a_template_and_on_a_partitioned_disk(project: ProjectDir) -> None:
    build(project, f"{PREFIX}child", f"{PREFIX}img")
    child = LIBRARY_DIR / f"{PREFIX}child" / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(child)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["backing-filename"] == str(LIBRARY_DIR / f"{PREFIX}img" / "disk.qcow2")
    shown = json.loads(ok(project, "template", "show", f"{PREFIX}child", "--uri", REAL_URI, "--json"))
    assert shown["lineage"] == [f"{PREFIX}child", f"{PREFIX}img"]
    assert_clean_error(project.crane("template", "rm", f"{PREFIX}img", "--uri", REAL_URI),
                       f"'{PREFIX}img' is the base of {PREFIX}child")
    ok(project, "template", "rm", f"{PREFIX}child", "--uri", REAL_URI)

    build(project, f"{PREFIX}parted", str(PARTITIONED))
    disk = LIBRARY_DIR / f"{PREFIX}parted" / "disk.qcow2"
    assert read_file(disk, "/etc/cqt/hello", PART_OFFSET) == "hello from the template\n"
    assert read_file(PARTITIONED, "/etc/cqt/hello", PART_OFFSET) is None
    ok(project, "template", "rm", f"{PREFIX}parted", "--uri", REAL_URI)
    assert leftovers() == NOTHING_LEFT


def test_a_failing_playbook_and_a_killed_build_leave_nothing(project: ProjectDir) -> None:
    failed = project.crane("template", "build", f"{PREFIX}broken", "--from", str(BASE), "--playbook", "failing.yml",
                           "--uri", REAL_URI)
    assert_clean_error(failed, "failed at task 'a command that fails'", "nothing was saved")
    assert leftovers() == NOTHING_LEFT
    assert not (LIBRARY_DIR / f"{PREFIX}broken").exists()

    child = subprocess.Popen([sys.executable, "-m", "crane_iac", "template", "build", f"{PREFIX}killed", "--from",
                              str(BASE), "--playbook", "slow.yml", "--uri", REAL_URI], cwd=project.root,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        marker = images.RUN_DIR / f"{PREFIX}killed" / "root" / "building"
        wait_until(lambda: marker.exists() or child.poll() is not None, 120, "the build's playbook to start")
        assert child.poll() is None, child.stdout.read() if child.stdout else ""
        child.send_signal(signal.SIGKILL)  # crane only: its ansible-playbook and the daemon live on
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout:
            child.stdout.close()
    left = leftovers()
    assert left["workspaces"] == [f"{PREFIX}killed"] and left["daemons"] and left["partial"], left
    assert f"{PREFIX}killed" not in ok(project, "template", "list", "--uri", REAL_URI)
    after = build(project, f"{PREFIX}after", str(BASE))
    assert f"released what the killed build of {PREFIX}killed left" in after, after
    assert leftovers() == NOTHING_LEFT
    assert not [d for d in Path(tempfile.gettempdir()).glob("crane-template-*")
                if "crane_chroot" in "".join(f.read_text() for f in d.glob("inventory/*"))]
    ok(project, "template", "rm", f"{PREFIX}after", "--uri", REAL_URI)


def test_a_vm_runs_on_a_volume_from_the_template(project: ProjectDir, real_host: RealHost) -> None:
    project.write_stack(STACK)
    ok(project, "apply", "--auto-approve")
    volume = POOL_DIR / f"{PREFIX}root"
    chain = json.loads(subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(volume)],
                                      capture_output=True, text=True, check=True).stdout)
    assert [c["filename"] for c in chain] == [str(volume), str(LIBRARY_DIR / f"{PREFIX}img" / "disk.qcow2"),
                                              str(BASE)]
    dom = real_host.conn.lookupByName(f"{PREFIX}vm")
    assert dom.isActive()
    assert dom.blockInfo("vda")[0] == DISK_MIB << 20  # QEMU opened the chain: the template's size
    assert read_file(volume, "/etc/cqt/hello") == "hello from the template\n"
    assert project.crane("plan", "--detailed-exitcode").code == 0
    assert_clean_error(project.crane("template", "rm", f"{PREFIX}img", "--uri", REAL_URI),
                       f"template '{PREFIX}img' is in use by main: volume.{PREFIX}root")
    ok(project, "destroy", "--auto-approve")
    ok(project, "template", "rm", f"{PREFIX}img", "--uri", REAL_URI)
    assert json.loads(ok(project, "template", "list", "--uri", REAL_URI, "--json")) == []
