"""Snapshots in the sandbox (libvirt's test driver): a Snapshot of a directory volume and of a qcow2 volume lands in
the template library's pool (made on first use), a Volume restores one, a second plan shows no changes, and destroy
removes them. The bytes are checked on the real libvirtd (tests/real/test_templates.py): the sandbox's volumes hold
nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ProjectDir, assert_clean_error, ok

STACK = """
from crane_iac import Snapshot, StoragePool, Volume

pool = StoragePool("data", path="/srv/data")
files = Volume("files", pool=pool, format="dir")
disk = Volume("disk", pool=pool, capacity_gib=2)
files_snap = Snapshot("files-snap", volume=files)
disk_snap = Snapshot("disk-snap", volume=disk)
Volume("files-restored", pool=pool, format="dir", source=files_snap)
Volume("disk-restored", pool=pool, source=disk_snap)
"""


def project(tmp_path: Path) -> ProjectDir:
    p = ProjectDir(tmp_path)
    p.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    p.write_stack(STACK)
    return p


def test_snapshots_and_restores_apply_and_settle(tmp_path: Path) -> None:
    p = project(tmp_path)
    plan = ok(p, "plan")
    for address in ("snapshot.files-snap", "snapshot.disk-snap", "volume.files-restored", "volume.disk-restored"):
        assert f"+ {address}" in plan, plan
    ok(p, "apply", "--auto-approve")
    snap = json.loads(ok(p, "state", "show", "snapshot.disk-snap"))
    assert snap["properties"] == {"pool": "crane-templates", "volume": "data/disk"}
    assert snap["outputs"]["format"] == "qcow2"
    restored = json.loads(ok(p, "state", "show", "volume.files-restored"))
    assert restored["properties"]["snapshot"] == "crane-templates/files-snap"
    assert restored["properties"]["format"] == "dir"
    disk = json.loads(ok(p, "state", "show", "volume.disk-restored"))
    assert (disk["properties"]["snapshot"], disk["properties"]["capacity_gib"]) == ("crane-templates/disk-snap", 2)
    # a volume that was not restored keeps the properties it always had (no new key in its record)
    assert "snapshot" not in json.loads(ok(p, "state", "show", "volume.disk"))["properties"]
    assert p.crane("plan", "--detailed-exitcode").code == 0
    ok(p, "destroy", "--auto-approve")
    assert ok(p, "state", "list") == ""


def test_a_snapshot_of_a_directory_restores_only_into_a_directory(tmp_path: Path) -> None:
    p = project(tmp_path)
    p.write_stack(STACK.replace('Volume("files-restored", pool=pool, format="dir", source=files_snap)',
                                'Volume("files-restored", pool=pool, format="qcow2", source=files_snap)'))
    assert_clean_error(p.crane("plan"), "snapshot.files-snap is a copy of a dir volume", "format='dir'")


def test_source_names_a_snapshot_not_another_resource(tmp_path: Path) -> None:
    p = project(tmp_path)
    p.write_stack(STACK + 'Volume("bad", pool=pool, source=disk)\n')
    assert_clean_error(p.crane("plan"), "source volume.disk is a volume", "clone=")
