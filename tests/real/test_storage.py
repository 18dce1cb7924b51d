"""crane's storage on a real libvirtd (qemu:///system): a directory pool crane defines, builds and removes; volumes
uploaded from image files and copied, compared byte for byte on the host; a cloud-init seed the guest's QEMU opens as
a CD-ROM. The tests of this module run in order on one applied stack."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.providers.libvirt import seed
from tests.conftest import ProjectDir, ok
from tests.real.host import REAL_URI, RealHost, drop_pool

PREFIX = "crs-"
ROOT = Path("/var/lib/crs-storage")  # made by libvirt when crane builds the pool, removed by the fixture
POOL_DIR = ROOT / "images"
MIB = 1024**2

STACK = """
from crane_iac import VM, CloudInit, StoragePool, Volume

images = StoragePool("crs-images", path="{pool_dir}")
raw = Volume("crs-raw", pool=images, source="{raw}", capacity_gib=1)
gold = Volume("crs-gold", pool=images, source="{qcow2}")
copy = Volume("crs-copy", pool=images, clone=gold, capacity_gib=2)
seed = CloudInit("crs-seed", pool=images, user_data={{"users": [{{"name": "{user}"}}]}},
                 network_config={{"version": 2, "ethernets": {{"eth0": {{"dhcp4": True}}}}}})
VM("crs-vm", vcpus=1, memory_mib=128, volumes=[copy], cloud_init=seed,
   kernel="{kernel}", initrd="{initrd}", cmdline="console=ttyS0")
"""


def qemu_img_info(path: Path) -> dict[str, object]:
    # --force-share: the running guest holds its disk locked
    out = subprocess.run(["qemu-img", "info", "--force-share", "--output=json", str(path)], capture_output=True,
                         text=True, check=True)
    return dict(json.loads(out.stdout))


def sweep(conn: libvirt.virConnect) -> None:
    """Remove what a failed run left: the domain, the volumes and pools named with PREFIX, the pool directory."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for pool in conn.listAllStoragePools(0):
        if pool.name().startswith(PREFIX):
            drop_pool(pool)
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A raw image of a known pattern, and a qcow2 image of another made from it by qemu-img."""
    where = tmp_path_factory.mktemp("images")
    raw = where / "pattern.img"
    raw.write_bytes(bytes(range(256)) * (3 * MIB // 256) + b"end of the raw image")
    other = where / "other.img"
    other.write_bytes(b"crane qcow2 source".ljust(32) * (MIB // 32) + bytes(64 * 1024))  # whole sectors
    qcow2 = where / "gold.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(other), str(qcow2)], check=True)
    return {"raw": raw, "other": other, "qcow2": qcow2}


def write_project(project: ProjectDir, host: RealHost, images: dict[str, Path], user: str) -> None:
    project.write_config(f"""
        [stacks.storage]
        file = "stacks/storage.py"
        uri = "{REAL_URI}"
        address_timeout = 0
        shutdown_timeout = 2
    """)
    project.write_stack(STACK.format(pool_dir=POOL_DIR, raw=images["raw"], qcow2=images["qcow2"], user=user,
                                     kernel=host.kernel, initrd=host.initrd), name="storage.py")


@pytest.fixture(scope="module")
def storage(real_host: RealHost, images: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    sweep(real_host.conn)
    project = ProjectDir(tmp_path_factory.mktemp("storage"))
    write_project(project, real_host, images, "ops")
    try:
        ok(project, "apply", "--auto-approve")
        yield project
        project.crane("destroy", "--auto-approve")
    finally:
        sweep(real_host.conn)


def test_crane_builds_starts_and_autostarts_the_pool(storage: ProjectDir, real_host: RealHost) -> None:
    pool = real_host.conn.storagePoolLookupByName("crs-images")
    assert pool.isActive() and pool.autostart()
    assert POOL_DIR.is_dir()  # the daemon made it: crane asked libvirt to build the pool
    shown = json.loads(ok(storage, "state", "show", "pool.crs-images"))
    # ROOT was missing too: libvirt built both, and state records both as crane's
    assert shown["properties"] == {"name": "crs-images", "type": "dir", "path": str(POOL_DIR), "active": True,
                                   "built": True, "made_dirs": [str(ROOT), str(POOL_DIR)]}
    assert sorted(v.name() for v in pool.listAllVolumes(0)) == ["crs-copy", "crs-gold", "crs-raw", "crs-seed"]


def test_uploaded_volumes_hold_the_image_bytes(storage: ProjectDir, images: dict[str, Path]) -> None:
    expected = images["raw"].read_bytes()
    with open(POOL_DIR / "crs-raw", "rb") as handle:
        raw = handle.read(len(expected) + MIB)
    assert (POOL_DIR / "crs-raw").stat().st_size == 1024**3  # grown to capacity_gib after the upload
    assert raw[:len(expected)] == expected and raw[len(expected):] == bytes(MIB)
    gold = qemu_img_info(POOL_DIR / "crs-gold")
    assert gold["format"] == "qcow2" and gold["virtual-size"] == images["other"].stat().st_size
    assert (POOL_DIR / "crs-gold").read_bytes() == images["qcow2"].read_bytes()  # the file exactly as sent
    # the copy is a full qcow2 of its own (no backing file), grown to 2 GiB, with the same guest-visible content
    copy = qemu_img_info(POOL_DIR / "crs-copy")
    assert (copy["format"], copy["virtual-size"], copy.get("backing-filename")) == ("qcow2", 2 * 1024**3, None)
    compared = subprocess.run(["qemu-img", "compare", "--force-share", "-f", "raw", "-F", "qcow2",
                               str(images["other"]), str(POOL_DIR / "crs-copy")], capture_output=True, text=True)
    assert compared.returncode == 0 and "Images are identical" in compared.stdout, compared.stdout + compared.stderr


def test_the_seed_is_a_cidata_iso_the_guest_opens_as_a_cdrom(storage: ProjectDir, real_host: RealHost) -> None:
    data = (POOL_DIR / "crs-seed").read_bytes()
    label, files = seed.read_iso(data)
    assert label == "cidata" and sorted(files) == ["meta-data", "network-config", "user-data"]
    assert json.loads(files["user-data"].split(b"\n", 1)[1]) == {"users": [{"name": "ops"}]}
    assert json.loads(files["meta-data"])["local-hostname"] == "crs-seed"
    dom = real_host.conn.lookupByName("crs-vm")
    assert dom.isActive()
    assert "<disk type='volume' device='cdrom'>" in dom.XMLDesc(0) and "bus='sata'" in dom.XMLDesc(0)
    assert dom.blockInfo("sda")[0] == len(data)  # QEMU opened the seed
    assert dom.blockInfo("vda")[0] == 2 * 1024**3


def test_the_applied_stack_shows_no_changes(storage: ProjectDir) -> None:
    result = storage.crane("plan", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err


def test_new_seed_contents_replace_the_seed_and_the_vm(storage: ProjectDir, real_host: RealHost,
                                                       images: dict[str, Path]) -> None:
    old_uuid = real_host.conn.lookupByName("crs-vm").UUIDString()
    write_project(storage, real_host, images, "admin")
    plan = ok(storage, "plan")
    assert "-/+ cloudinit.crs-seed  user_data" in plan and "-/+ vm.crs-vm  cloud_init" in plan, plan
    assert "crs-copy" not in plan and "crs-gold" not in plan
    ok(storage, "apply", "--auto-approve")
    dom = real_host.conn.lookupByName("crs-vm")
    assert dom.UUIDString() != old_uuid and dom.isActive()
    _, files = seed.read_iso((POOL_DIR / "crs-seed").read_bytes())
    assert b'"admin"' in files["user-data"]
    assert dom.blockInfo("sda")[0] == (POOL_DIR / "crs-seed").stat().st_size
    assert storage.crane("plan", "--detailed-exitcode").code == 0


def test_a_pool_stopped_outside_crane_is_started_again_its_volumes_and_the_guest_left_alone(
        storage: ProjectDir, real_host: RealHost) -> None:
    """`virsh pool-destroy` under a running guest: its disks stay open, libvirt cannot list the pool's volumes, and
    the plan starts the pool again without planning anything for them or for the guest."""
    pool = real_host.conn.storagePoolLookupByName("crs-images")
    pool.destroy()  # as `virsh pool-destroy` would
    plan = storage.crane("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    assert "~ pool.crs-images  active: false → true" in plan.out, plan.out
    assert "volume." not in plan.out and "cloudinit." not in plan.out and "vm." not in plan.out, plan.out
    ok(storage, "apply", "--auto-approve")
    assert pool.isActive() and real_host.conn.lookupByName("crs-vm").isActive()
    assert sorted(v.name() for v in pool.listAllVolumes(0)) == ["crs-copy", "crs-gold", "crs-raw", "crs-seed"]
    assert storage.crane("plan", "--detailed-exitcode").code == 0


def test_destroy_removes_the_volumes_the_pool_and_the_directory_crane_made(storage: ProjectDir,
                                                                          real_host: RealHost) -> None:
    ok(storage, "destroy", "--auto-approve")
    assert not [d for d in real_host.conn.listAllDomains(0) if d.name().startswith(PREFIX)]
    assert not [p for p in real_host.conn.listAllStoragePools(0) if p.name().startswith(PREFIX)]
    assert not POOL_DIR.exists()
    assert not ROOT.exists()  # the parent crane's pool made goes with it (nothing else was put there)
    assert ok(storage, "state", "list") == ""


def test_a_pool_on_an_existing_directory_leaves_it(real_host: RealHost, tmp_path: Path) -> None:
    """crane did not make the directory: destroying the pool leaves it, and what is in it."""
    existing = ROOT / "kept"
    existing.mkdir(parents=True, exist_ok=True)
    (existing / "notes.txt").write_text("not crane's")
    project = ProjectDir(tmp_path)
    project.write_config(f"""
        [stacks.kept]
        file = "stacks/kept.py"
        uri = "{REAL_URI}"
    """)
    project.write_stack(f'from crane_iac import StoragePool\nStoragePool("crs-kept", path="{existing}")\n',
                        name="kept.py")
    try:
        ok(project, "apply", "--auto-approve")
        assert json.loads(ok(project, "state", "show", "pool.crs-kept"))["properties"]["built"] is False
        assert real_host.conn.storagePoolLookupByName("crs-kept").isActive()
        ok(project, "destroy", "--auto-approve")
        with pytest.raises(libvirt.libvirtError):
            real_host.conn.storagePoolLookupByName("crs-kept")
        assert (existing / "notes.txt").read_text() == "not crane's"
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            sweep(real_host.conn)
