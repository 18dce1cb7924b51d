"""Templates and snapshots on the real libvirtd: a container template built from a playbook on this host's own root
(a file and a tool installed under /opt, seen by a container started from it, the host's /opt untouched), and
snapshots of a directory volume and a qcow2 volume restored after the originals changed. The tests of this module
run in order on one project; the library (the pool crane-templates) is made in it and removed at the end."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.templates import layers
from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.real.host import LXC_URI, LxcHost, lookup_pool, release_template_mounts, remove_library
from tests.waiting import wait_until

PREFIX = "crt-"
LIBRARY = "crane-templates"
PLAYBOOK = """
- hosts: all
  tasks:
    - name: a directory for the tool
      ansible.builtin.file:
        path: /opt/crt-tool
        state: directory
        mode: "0755"
    - name: the tool
      ansible.builtin.copy:
        dest: /opt/crt-tool/greet
        mode: "0755"
        content: |
          #!/bin/sh
          echo "hello from {{ greeting }}"
"""
FAILING = """
- hosts: all
  tasks:
    - name: a command that fails
      ansible.builtin.command: /bin/false
"""
CONTAINER = """
from crane_iac import Container, StoragePool, Volume

pool = StoragePool("{p}pool", path="{pool_dir}")
out = Volume("{p}out", pool=pool, format="dir")
Container("{p}tool", memory_mib=64, template="{p}tools", mounts={{"/mnt": out}},
          init=["/bin/sh", "-c", "/opt/crt-tool/greet > /mnt/seen; exec sleep infinity"])
"""
SNAPSHOTS = """
from crane_iac import Snapshot, StoragePool, Volume

pool = StoragePool("{p}pool", path="{pool_dir}")
files = Volume("{p}files", pool=pool, format="dir")
disk = Volume("{p}disk", pool=pool, capacity_gib=1)
files_snap = Snapshot("{p}files-snap", volume=files)
disk_snap = Snapshot("{p}disk-snap", volume=disk)
"""
RESTORES = """
Volume("{p}files-back", pool=pool, format="dir", source=files_snap)
Volume("{p}disk-back", pool=pool, source=disk_snap)
"""


def sweep(conn: libvirt.virConnect, lxc: LxcHost, library_dir: Path | None = None) -> None:
    """What a failed run left: the containers, the mounts under /run/crane, the library pool and the stack's pool."""
    lxc.sweep(PREFIX)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(f"crane-build-{PREFIX}"):
            dom.destroy()
    release_template_mounts(f"{PREFIX}tools", [f"{PREFIX}tool"])
    pool = lookup_pool(conn, LIBRARY)
    if pool is not None:
        remove_library(pool)
    if library_dir is not None:
        shutil.rmtree(library_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def project(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    sweep(lxc_host.conn, lxc_host)
    p = ProjectDir(tmp_path_factory.mktemp("templates"))
    p.write_config(f"""
        [stacks.main]
        file = "stacks/main.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 2
    """)
    (p.root / "site.yml").write_text(PLAYBOOK)
    (p.root / "failing.yml").write_text(FAILING)
    try:
        yield p
        p.crane("destroy", "--auto-approve")
    finally:
        sweep(lxc_host.conn, lxc_host, p.root / ".crane" / "templates")
        shutil.rmtree(f"/var/lib/{PREFIX}pool", ignore_errors=True)
        for directory in (layers.ROOTS, layers.LAYERS, layers.BUILDS, layers.RUN_DIR):  # empty by now
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_a_playbook_builds_a_container_template_with_its_manifest(project: ProjectDir) -> None:
    built = ok(project, "template", "build", f"{PREFIX}tools", "--from", "/", "--playbook", "site.yml",
               "--var", "greeting=the template", "--uri", LXC_URI)
    assert "the tool: changed" in built, built
    assert not Path("/opt/crt-tool").exists()  # the host's own root is untouched: the layer holds it
    shown = json.loads(ok(project, "template", "show", f"{PREFIX}tools", "--uri", LXC_URI, "--json"))
    manifest = shown["manifest"]
    assert manifest["base"]["kind"] == "dir" and manifest["base"]["ref"] == "/"
    assert manifest["variables"] == {"greeting": "the template"}
    assert manifest["playbook"]["digest"].startswith("sha256:") and manifest["content_digest"].startswith("sha256:")
    assert shown["lineage"] == [f"{PREFIX}tools"] and shown["stale"] is None
    layer = project.root / ".crane" / "templates" / f"{PREFIX}tools" / "layer.img"
    assert layer.is_file()
    assert not list(layers.BUILDS.glob(f"*{PREFIX}*")) and not list(layers.LAYERS.glob(f"*{PREFIX}*"))


def test_a_failing_playbook_saves_nothing(project: ProjectDir, lxc_host: LxcHost) -> None:
    failed = project.crane("template", "build", f"{PREFIX}broken", "--from", "/", "--playbook", "failing.yml",
                           "--uri", LXC_URI)
    assert_clean_error(failed, "the playbook", "failed at task 'a command that fails'", "nothing was saved")
    assert f"{PREFIX}broken" not in ok(project, "template", "list", "--uri", LXC_URI)
    assert not [d for d in lxc_host.conn.listAllDomains(0) if d.name().startswith("crane-build-")]


def test_a_container_runs_on_the_template(project: ProjectDir, lxc_host: LxcHost) -> None:
    project.write_stack(CONTAINER.format(p=PREFIX, pool_dir=f"/var/lib/{PREFIX}pool"))
    ok(project, "apply", "--auto-approve")
    seen = Path(f"/var/lib/{PREFIX}pool/{PREFIX}out/seen")
    wait_until(lambda: seen.is_file() and seen.read_text(), 30, "the container ran the template's tool")
    assert seen.read_text() == "hello from the template\n"
    assert not Path("/opt/crt-tool").exists()
    assert project.crane("plan", "--detailed-exitcode").code == 0
    assert_clean_error(project.crane("template", "rm", f"{PREFIX}tools", "--uri", LXC_URI),
                       f"in use by main: container.{PREFIX}tool")
    ok(project, "destroy", "--auto-approve")
    assert not layers.is_mounted(layers.ROOTS / f"{PREFIX}tool")
    assert not list(layers.LAYERS.glob(f"{PREFIX}*"))  # the layer no container uses any more is unmounted


def qemu_io(path: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], capture_output=True, text=True)


def test_snapshots_restore_what_the_volumes_held(project: ProjectDir) -> None:
    pool_dir = Path(f"/var/lib/{PREFIX}pool")
    project.write_stack(SNAPSHOTS.format(p=PREFIX, pool_dir=pool_dir))
    ok(project, "apply", "--auto-approve", "--target", f"volume.{PREFIX}files", "--target", f"volume.{PREFIX}disk")
    (pool_dir / f"{PREFIX}files" / "data.txt").write_text("before")
    (pool_dir / f"{PREFIX}files" / "sub").mkdir()
    (pool_dir / f"{PREFIX}files" / "sub" / "more").write_text("nested")
    assert qemu_io(pool_dir / f"{PREFIX}disk", "write -P 0xab 0 1M").returncode == 0
    ok(project, "apply", "--auto-approve")  # the snapshots
    library = project.root / ".crane" / "templates"
    assert (library / f"{PREFIX}files-snap" / "data.txt").read_text() == "before"
    # the originals change after the snapshot
    (pool_dir / f"{PREFIX}files" / "data.txt").write_text("after")
    assert qemu_io(pool_dir / f"{PREFIX}disk", "write -P 0xcd 0 1M").returncode == 0
    project.write_stack(SNAPSHOTS.format(p=PREFIX, pool_dir=pool_dir) + RESTORES.format(p=PREFIX))
    ok(project, "apply", "--auto-approve")
    back = pool_dir / f"{PREFIX}files-back"
    assert (back / "data.txt").read_text() == "before" and (back / "sub" / "more").read_text() == "nested"
    read = qemu_io(pool_dir / f"{PREFIX}disk-back", "read -P 0xab 0 1M")
    assert read.returncode == 0 and "Pattern verification failed" not in read.stdout, read.stdout + read.stderr
    assert project.crane("plan", "--detailed-exitcode").code == 0
    ok(project, "destroy", "--auto-approve")
    assert not (library / f"{PREFIX}files-snap").exists()
