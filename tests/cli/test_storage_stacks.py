"""StoragePool, Volume(source=/clone=) and CloudInit through the `crane` command on the sandbox hypervisor."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.resources import VM, CloudInit, Registry, StoragePool, Volume, collecting
from tests.conftest import ProjectDir, assert_clean_error

STACK = """
from crane_iac import VM, CloudInit, StoragePool, Volume

images = StoragePool("images", path="{root}/images")
gold = Volume("gold", pool=images, source="{image}")
root = Volume("web-1-root", pool=images, clone=gold, capacity_gib=4)
seed = CloudInit("web-1", pool=images, user_data={{"users": [{{"name": "{user}"}}]}},
                 network_config={{"version": 2}})
VM("web-1", vcpus=1, memory_mib=256, volumes=[root], cloud_init=seed)
"""


def raw_image(path: Path, size: int = 3 * 1024 * 1024) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def show(project: ProjectDir, address: str) -> dict[str, Any]:
    result = project.crane("state", "show", address)
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def write(project: ProjectDir, image: Path, user: str = "ops") -> None:
    project.write_stack(STACK.format(root=project.root, image=image, user=user))


def test_pool_volumes_and_seed_apply_converge_change_and_destroy(project: ProjectDir) -> None:
    image = raw_image(project.root / "gold.img")
    write(project, image)
    plan = project.crane("plan")
    assert plan.code == 0, plan.err
    assert "+ pool.images" in plan.out and "source = " + str(image) in plan.out and "clone        = images/gold" \
        in plan.out, plan.out
    applied = project.crane("apply", "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    # pools before the volumes in them, the copy after its original, the VM after its disk and seed
    order = [line.split(":")[0] for line in applied.out.splitlines() if line.endswith(")") and ": created" in line]
    assert order.index("pool.images") < order.index("volume.gold") < order.index("volume.web-1-root") \
        < order.index("vm.web-1"), order
    assert order.index("pool.images") < order.index("cloudinit.web-1") < order.index("vm.web-1"), order
    assert project.crane("plan", "--detailed-exitcode").code == 0
    assert show(project, "volume.gold")["properties"]["source"] == str(image)
    assert show(project, "volume.web-1-root")["dependencies"] == ["pool.images", "volume.gold"]
    conn = project.sandbox()
    try:
        assert conn.storagePoolLookupByName("images").isActive()
        cdrom = ET.fromstring(conn.lookupByName("web-1").XMLDesc(0)).find("devices/disk[@device='cdrom']")
        assert cdrom is not None and cdrom.find("source").get("volume") == "web-1"  # type: ignore[union-attr]
        sizes = {v.name(): v.info()[1] for v in conn.storagePoolLookupByName("images").listAllVolumes(0)}
    finally:
        conn.close()
    assert sizes["gold"] == image.stat().st_size and sizes["web-1-root"] == 4 * 1024**3

    # what libvirt cannot report survives a refresh (kept from state)
    assert project.crane("refresh").code == 0
    assert show(project, "cloudinit.web-1")["properties"]["user_data"] == {"users": [{"name": "ops"}]}
    assert project.crane("plan", "--detailed-exitcode").code == 0

    # new seed contents: a new seed and a new domain (disks stay)
    old_uuid = show(project, "vm.web-1")["outputs"]["uuid"]
    write(project, image, user="admin")
    plan = project.crane("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert "-/+ cloudinit.web-1  user_data" in plan.out and "-/+ vm.web-1  cloud_init" in plan.out, plan.out
    assert "volume.web-1-root" not in plan.out and "volume.gold" not in plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert show(project, "vm.web-1")["outputs"]["uuid"] != old_uuid
    assert project.crane("plan", "--detailed-exitcode").code == 0

    # another image file: the volume made from it is replaced; its copy is independent and stays
    other = raw_image(project.root / "other.img", 2 * 1024 * 1024)
    write(project, other, user="admin")
    plan = project.crane("plan")
    assert f"-/+ volume.gold  source: {image} → {other}  # forces replacement" in plan.out, plan.out
    assert "web-1-root" not in plan.out
    assert project.crane("apply", "--auto-approve").code == 0

    destroyed = project.crane("destroy", "--auto-approve")
    assert destroyed.code == 0, destroyed.err
    conn = project.sandbox()
    try:
        assert [p.name() for p in conn.listAllStoragePools(0)] == ["default"]
        assert conn.listAllDomains(0) == []
    finally:
        conn.close()


def test_a_pool_stopped_outside_crane_is_drift_its_volumes_stay_and_apply_starts_it(project: ProjectDir) -> None:
    image = raw_image(project.root / "gold.img")
    write(project, image)
    assert project.crane("apply", "--auto-approve").code == 0
    other = LibvirtProvider(None, sandbox_dir=project.root / ".crane", mutating=True)  # a second client
    other.conn.storagePoolLookupByName("images").destroy()  # as `virsh pool-destroy` would
    other.host.changing("pool", "images")  # saved when it closes, as crane's own changes are
    other.close()
    plan = project.crane("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    drift, _, changes = plan.out.partition("crane will make these changes")
    assert "! pool.images  active: true → false" in drift, plan.out
    assert "~ pool.images  active: false → true" in changes, plan.out
    # libvirt cannot list a stopped pool's volumes: they, the seed and the VM on them are as state recorded them
    assert "volume." not in plan.out and "cloudinit." not in plan.out and "vm." not in plan.out, plan.out
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete." in plan.out, plan.out
    refreshed = project.crane("refresh")  # neither are they forgotten by a refresh
    assert refreshed.code == 0 and "1 of 5 records updated" in refreshed.out, refreshed.out + refreshed.err
    assert show(project, "pool.images")["properties"]["active"] is False
    assert "volume.web-1-root" in project.crane("state", "list").out
    applied = project.crane("apply", "--auto-approve")
    assert applied.code == 0, applied.out + applied.err
    conn = project.sandbox()
    try:
        pool = conn.storagePoolLookupByName("images")
        assert pool.isActive() and sorted(v.name() for v in pool.listAllVolumes(0)) == ["gold", "web-1", "web-1-root"]
    finally:
        conn.close()
    assert show(project, "pool.images")["properties"]["active"] is True
    assert project.crane("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(("stack", "needles"), [
    ('Volume("d", source="{root}/missing.qcow2")',
     ["main.py:2: volume.d: source '{root}/missing.qcow2' does not exist on the machine running crane"]),
    ('Volume("d", source="{image}", format="qcow2")',
     ["main.py:2: volume.d: source '{image}' is a raw image, not qcow2"]),
    ('Volume("d", source="{image}", capacity_gib=1, pool="scratch")',
     ["main.py:2: volume.d: storage pool 'scratch' does not exist", "StoragePool('scratch', path=<directory>)"]),
    ('Volume("d", source="disk.img")', ["main.py:2: volume.d: ", "source image 'disk.img' must be an absolute path"]),
    ('Volume("d", source="{image}", base="/srv/base.qcow2")',
     ["main.py:2: volume.d: ", "give at most one of base, source, clone and template, not base and source"]),
    ('Volume("d", pool=StoragePool("p", path="/srv/p"))',
     ["main.py:2: volume.d: ", "capacity_gib is required (it may be left out only with source=, clone= or template=)"]),
    ('Volume("d", clone=Volume("big", capacity_gib=8), capacity_gib=4)',
     ["main.py:2: volume.d: ", "capacity_gib (4) is below that of volume.big (8), which it copies"]),
    ('StoragePool("p", path="/srv/p"); StoragePool("q", path="/srv/p/")',
     ["main.py:2: pool.q: pool directory '/srv/p' is already used by pool.p"]),
    ('Volume("d", capacity_gib=1); CloudInit("d", user_data="#!/bin/sh")',
     ["main.py:2: cloudinit.d: hypervisor name 'd' is already used by volume.d"]),
])
def test_bad_storage_is_reported_with_file_line_and_address(project: ProjectDir, stack: str,
                                                            needles: list[str]) -> None:
    image = raw_image(project.root / "disk.img")
    body = "from crane_iac import CloudInit, StoragePool, Volume\n" + stack.format(root=project.root, image=image)
    project.write_stack(body)
    result = project.crane("plan")
    assert_clean_error(result, *(n.format(root=project.root, image=image) for n in needles))
    assert not (project.root / ".crane" / "sandbox.xml").exists()


def test_a_volume_may_name_a_pool_the_same_plan_creates_through_the_object(project: ProjectDir) -> None:
    project.write_stack(f"""
        from crane_iac import StoragePool, Volume
        fast = StoragePool("fast", path="{project.root}/crane-fast")
        Volume("scratch", pool=fast, capacity_gib=2)
    """)
    applied = project.crane("apply", "--auto-approve")
    assert applied.code == 0, applied.err
    assert show(project, "volume.scratch")["properties"]["pool"] == "fast"


def test_seed_defaults_and_digest() -> None:
    with collecting(Registry(stack_file="x.py")) as registry:
        pool = StoragePool("p", path="/srv/p//")
        a = CloudInit("web-1", user_data="#cloud-config\n", pool=pool)
        b = CloudInit("web-2", user_data="#cloud-config\n", meta_data={"local-hostname": "www"},
                      network_config="version: 2\n")
        vm = VM("web-1", vcpus=1, memory_mib=64, cloud_init=a)
    assert registry.diagnostics == []
    assert pool.properties() == {"name": "p", "type": "dir", "path": "/srv/p"}
    meta = a.properties()["meta_data"]
    assert meta["local-hostname"] == "web-1" and meta["instance-id"].startswith("web-1-")
    assert b.properties()["meta_data"]["local-hostname"] == "www"
    assert a.properties()["pool"] == "p" and vm.references() == [a]
    assert vm.properties()["cloud_init"] == a.reference and a.reference.startswith("p/web-1@")
    changed = CloudInit("web-1", user_data="#cloud-config\npackages: [nginx]\n", pool=pool)
    assert changed.reference != a.reference  # new contents: the VM using it changes too
    assert changed.properties()["meta_data"]["instance-id"] != meta["instance-id"]  # and cloud-init runs again
    assert Volume("v", pool=pool, capacity_gib=1).reference == "p/v"


def test_source_volume_adopted_after_a_crash_is_replaced(project: ProjectDir) -> None:
    image = raw_image(project.root / "gold.img")
    project.write_stack(f'from crane_iac import Volume\nVolume("gold", source="{image}")\n')
    killed = project.crane("apply", "--auto-approve", env={"CRANE_FAILPOINT": "after-checkpoint"})
    assert killed.code < 0
    plan = project.crane("plan")
    # the volume exists but crane never recorded it: whether its upload finished is unknown
    assert "-/+ volume.gold  source: null → " in plan.out and "adopted" in plan.out, plan.out
    assert project.crane("apply", "--auto-approve").code == 0
    assert project.crane("plan", "--detailed-exitcode").code == 0


def test_the_sandbox_makes_no_directory_for_a_pool_and_records_none(project: ProjectDir, tmp_path: Path) -> None:
    """The sandbox touches nothing on this machine's disks: a pool there has no directory, and its record says crane
    made none (a real host records what libvirt built, and removes it: tests/real/test_storage.py)."""
    parent = tmp_path / "existing"
    parent.mkdir()
    project.write_stack(f'from crane_iac import StoragePool\nStoragePool("deep", path="{parent}/a/b/pool")\n')
    assert project.crane("apply", "--auto-approve").code == 0
    assert not (parent / "a").exists()
    assert show(project, "pool.deep")["properties"]["made_dirs"] == []
    assert project.crane("plan", "--detailed-exitcode").code == 0
    destroyed = project.crane("destroy", "--auto-approve")
    assert destroyed.code == 0, destroyed.err
    assert parent.is_dir()
