"""Storage pools, volumes from images and copies, and cloud-init seeds through the libvirt provider on the sandbox
(libvirt's test driver, which holds no data: it cannot upload, so sizes and formats are what can be checked here;
tests/real/test_storage.py checks the bytes on a real libvirtd)."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

from crane_iac.errors import ProviderError
from crane_iac.objects import Reach
from crane_iac.providers.base import CreateRequest, DeleteRequest, Owner, UpdateRequest
from crane_iac.providers.libvirt import LibvirtProvider, images, seed
from crane_iac.providers.libvirt.pools import missing_dirs, remove_empty
from crane_iac.providers.libvirt.rules import diff_properties
from crane_iac.providers.libvirt.xml import parse_domain

MIB, GIB = 1024**2, 1024**3
VM_PROPS: dict[str, Any] = {"vcpus": 1, "max_vcpus": 1, "memory_mib": 128, "max_memory_mib": 128, "nics": [],
                            "disks": [], "running": True, "autostart": False, "description": None,
                            "kernel": None, "initrd": None, "cmdline": None, "cloud_init": None}
SEED_PROPS: dict[str, Any] = {"pool": "default", "user_data": {"users": [{"name": "ops"}]},
                              "meta_data": {"instance-id": "web-1-abc", "local-hostname": "web-1"},
                              "network_config": None}


def qcow2(path: Path, virtual_size: int, backing: bool = False) -> Path:
    """A qcow2 header (all crane reads of an image) declaring ``virtual_size``."""
    header = b"QFI\xfb" + struct.pack(">IQIIQI", 3, 512 if backing else 0, 8 if backing else 0, 16, virtual_size, 0)
    path.write_bytes(header.ljust(4096, b"\0"))
    return path


def volume(p: dict[str, Any]) -> dict[str, Any]:
    return {"capacity_gib": None, "pool": "default", "format": None, "base": None, "source": None, "clone": None, **p}


@pytest.fixture
def provider(tmp_path: Path) -> Any:
    p = LibvirtProvider(None, sandbox_dir=tmp_path / "sandbox", mutating=True)
    yield p
    p.close()


def live_by_key(provider: LibvirtProvider) -> dict[tuple[str, str], Any]:
    return {(x.kind, x.physical): x for x in provider.read_all()}


def test_pool_is_defined_started_read_back_persisted_and_deleted(tmp_path: Path) -> None:
    p = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    props = {"name": "images", "type": "dir", "path": str(tmp_path / "images")}
    created = p.create(CreateRequest("pool", "images", props, Owner("s", "pool.images")))
    # the sandbox touches nothing on this machine's disks: the test driver needs no directory, and crane made none
    assert created.properties == {**props, "active": True, "built": False, "made_dirs": []}
    assert not (tmp_path / "images").exists()
    pool = p.conn.storagePoolLookupByName("images")
    assert pool.isActive() and pool.autostart()
    p.create(CreateRequest("volume", "disk", volume({"capacity_gib": 2, "pool": "images", "format": "raw"}),
                           Owner("s", "v")))
    p.close()
    again = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)  # from the node file
    live = live_by_key(again)
    assert live[("pool", "images")].properties == {**props, "active": True}  # built, made_dirs: from state
    assert live[("volume", "disk")].properties["pool"] == "images"
    again.delete(DeleteRequest("volume", "disk", {"pool": "images"}))
    again.delete(DeleteRequest("pool", "images", created.properties))
    again.delete(DeleteRequest("pool", "images", created.properties))  # already gone is not an error
    assert ("pool", "images") not in live_by_key(again)
    again.close()
    assert not (tmp_path / "images").exists()


def test_a_pool_stopped_outside_crane_reads_stopped_its_volumes_unlisted_and_update_starts_it(
        provider: LibvirtProvider) -> None:
    props = {"name": "images", "type": "dir", "path": "/srv/images"}
    facts = {"built": False, "made_dirs": []}
    provider.create(CreateRequest("pool", "images", props, Owner("s", "pool.images")))
    provider.create(CreateRequest("volume", "disk", volume({"capacity_gib": 1, "pool": "images", "format": "raw"}),
                                  Owner("s", "v")))
    provider.create(CreateRequest("volume", "spare", volume({"capacity_gib": 1, "format": "raw"}), Owner("s", "w")))
    provider.conn.storagePoolLookupByName("images").destroy()  # as `virsh pool-destroy` would
    live = live_by_key(provider)
    assert live[("pool", "images")].properties == {**props, "active": False}
    # libvirt cannot list a stopped pool's volumes: their absence says nothing, unlike a running pool's
    assert ("volume", "disk") not in live and ("volume", "spare") in live
    assert provider.unlisted("volume", {"pool": "images"}) and provider.unlisted("cloudinit", {"pool": "images"})
    assert not provider.unlisted("volume", {"pool": "default"}) and not provider.unlisted("pool", props)
    before = {**live[("pool", "images")].properties, **facts}
    assert [(f.name, f.before, f.after, f.reach) for f in provider.diff("pool", before, props)] == [
        ("active", False, True, Reach.LIVE)]
    assert provider.diff("pool", {**props, **facts}, props) == []  # a record from before crane read ``active``
    started = provider.update(UpdateRequest("pool", "images", before, props))
    assert started.properties == {**props, "active": True, **facts}
    assert ("volume", "disk") in live_by_key(provider) and not provider.unlisted("volume", {"pool": "images"})


def test_a_pools_directories_are_those_missing_and_go_deepest_first_while_empty(tmp_path: Path) -> None:
    """What a real host's pool records (``missing_dirs`` before libvirt builds it) and removes with it: tmp_path/x
    existed, so crane made x/a, x/a/b and the pool's own x/a/b/pool; they go deepest first while empty, and a
    directory that holds anything stays, with every one above it. (tests/real/test_storage.py does it through a
    real libvirtd.)"""
    (tmp_path / "x").mkdir()
    pool = tmp_path / "x" / "a" / "b" / "pool"
    made = missing_dirs(str(pool))
    assert made == [str(tmp_path / "x" / "a"), str(tmp_path / "x" / "a" / "b"), str(pool)]
    pool.mkdir(parents=True)
    remove_empty(made)
    assert not (tmp_path / "x" / "a").exists() and (tmp_path / "x").is_dir()  # x was there before crane

    pool.mkdir(parents=True)
    (tmp_path / "x" / "a" / "b" / "notes").write_text("mine")  # something else put a file beside the pool
    remove_empty(made)
    assert not pool.exists() and (tmp_path / "x" / "a" / "b" / "notes").read_text() == "mine"
    assert missing_dirs(str(pool)) == [str(pool)]  # a pool in a directory that exists: only its own is new


def test_volume_from_an_image_takes_its_format_and_size(provider: LibvirtProvider, tmp_path: Path) -> None:
    image = qcow2(tmp_path / "img.qcow2", 3 * GIB + 5)
    made = provider.create(CreateRequest("volume", "up", volume({"source": str(image)}), Owner("s", "volume.up")))
    assert made.properties == {"capacity_gib": 4, "pool": "default", "format": "qcow2", "base": None,
                               "source": str(image), "clone": None}
    raw = tmp_path / "disk.img"
    raw.write_bytes(b"x" * 3 * MIB)
    bigger = provider.create(CreateRequest("volume", "raw", volume({"source": str(raw), "capacity_gib": 2}),
                                           Owner("s", "v.r")))
    assert (bigger.properties["format"], bigger.properties["capacity_gib"]) == ("raw", 2)
    # libvirt cannot say what a volume was made from: the live read leaves it out and the engine keeps it from state
    assert "source" not in live_by_key(provider)[("volume", "up")].properties


def test_volume_from_an_image_the_volume_cannot_hold_is_refused(provider: LibvirtProvider, tmp_path: Path) -> None:
    image = qcow2(tmp_path / "img.qcow2", 3 * GIB)
    with pytest.raises(ProviderError, match=r"capacity_gib=2 is smaller than the image's virtual size \(3\.00 GiB\)"):
        provider.create(CreateRequest("volume", "up", volume({"source": str(image), "capacity_gib": 2}),
                                      Owner("s", "v")))
    assert ("volume", "up") not in live_by_key(provider)


def test_clone_copies_a_volume_at_least_its_size(provider: LibvirtProvider) -> None:
    provider.create(CreateRequest("volume", "gold", volume({"capacity_gib": 2, "format": "qcow2"}),
                                  Owner("s", "volume.gold")))
    copy = provider.create(CreateRequest("volume", "copy", volume({"clone": "default/gold",
                                         "capacity_gib": 5}), Owner("s", "v")))
    assert copy.properties == {"capacity_gib": 5, "pool": "default", "format": "qcow2", "base": None, "source": None,
                               "clone": "default/gold"}
    same = provider.create(CreateRequest("volume", "same", volume({"clone": "default/gold",
                                         "format": "raw"}), Owner("s", "v2")))
    assert (same.properties["capacity_gib"], same.properties["format"]) == (2, "raw")


def test_seed_volume_and_the_vm_cdrom(provider: LibvirtProvider) -> None:
    made = provider.create(CreateRequest("cloudinit", "web-1", SEED_PROPS, Owner("s", "cloudinit.web-1")))
    assert {k: made.properties[k] for k in SEED_PROPS} == SEED_PROPS
    assert made.properties["format"] == "raw" and made.properties["capacity_gib"] == 1
    size = len(seed.build(SEED_PROPS))
    vol = provider.conn.storagePoolLookupByName("default").storageVolLookupByName("web-1")
    assert vol.info()[1] == size  # sized to the ISO image it holds on a real host
    vm = {**VM_PROPS, "cloud_init": "default/web-1@0123456789ab"}
    provider.create(CreateRequest("vm", "web-1", vm, Owner("s", "vm.web-1")))
    root = ET.fromstring(provider.conn.lookupByName("web-1").XMLDesc(0))
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.get("type") == "volume"
    assert cdrom.find("source").attrib == {"pool": "default", "volume": "web-1"}  # type: ignore[union-attr]
    assert cdrom.find("target").attrib == {"dev": "sda", "bus": "sata"}  # type: ignore[union-attr]
    assert cdrom.find("readonly") is not None
    live = live_by_key(provider)[("vm", "web-1")]
    assert live.properties["cloud_init"] == "default/web-1@0123456789ab" and live.properties["disks"] == []
    # a seed volume reads back as a volume of its pool (seeds and volumes share the pool's names)
    assert live_by_key(provider)[("volume", "web-1")].properties["format"] == "raw"


def test_a_cdrom_whose_recorded_digest_is_not_for_it_reads_as_unknown() -> None:
    xml = """<domain><metadata><c:cloud-init xmlns:c='https://crane-iac.dev/xmlns/cloud-init/1'
      volume='default/old' digest='abc'/></metadata><devices>
      <disk type='volume' device='cdrom'><source pool='default' volume='new'/></disk></devices></domain>"""
    props = parse_domain(ET.fromstring(xml), running=False, autostart=False, volume_by_path={})
    assert props["cloud_init"] == "default/new@" and props["disks"] == []


def test_seed_iso_holds_the_nocloud_files_under_the_cidata_label() -> None:
    props = {**SEED_PROPS, "network_config": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}}
    label, files = seed.read_iso(seed.build(props))
    assert label == "cidata"
    assert sorted(files) == ["meta-data", "network-config", "user-data"]
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert json.loads(files["user-data"].split(b"\n", 1)[1]) == {"users": [{"name": "ops"}]}
    assert json.loads(files["meta-data"]) == {"instance-id": "web-1-abc", "local-hostname": "web-1"}
    assert json.loads(files["network-config"])["ethernets"]["eth0"]["dhcp4"] is True
    script = {**SEED_PROPS, "user_data": "#!/bin/sh\necho hi\n"}
    label, files = seed.read_iso(seed.build(script))
    assert files["user-data"] == b"#!/bin/sh\necho hi\n" and "network-config" not in files


def test_image_probe_reads_qcow2_and_refuses_what_it_cannot_upload(tmp_path: Path) -> None:
    assert images.probe(str(qcow2(tmp_path / "a.qcow2", 10 * GIB))) == images.Image("qcow2", 10 * GIB, 4096)
    (tmp_path / "r.img").write_bytes(b"\1" * 1000)
    assert images.probe(str(tmp_path / "r.img")) == images.Image("raw", 1000, 1000)
    with pytest.raises(images.ImageError, match="backing file"):
        images.probe(str(qcow2(tmp_path / "b.qcow2", GIB, backing=True)))
    (tmp_path / "d.vmdk").write_bytes(b"KDMV" + b"\0" * 100)
    with pytest.raises(images.ImageError, match="is a VMDK image"):
        images.probe(str(tmp_path / "d.vmdk"))
    assert images.problems(str(tmp_path / "nope"), None, None) == [
        f"source {str(tmp_path / 'nope')!r} does not exist on the machine running crane"]
    assert "is a raw image, not qcow2" in images.problems(str(tmp_path / "r.img"), "qcow2", None)[0]


def test_diff_keeps_what_the_stack_leaves_to_the_origin_and_replaces_unknown_origins() -> None:
    live = {"capacity_gib": 4, "pool": "default", "format": "qcow2", "base": None, "source": "/i.qcow2", "clone": None}
    assert diff_properties("volume", live, {**live, "capacity_gib": None, "format": None}) == []
    grown = diff_properties("volume", live, {**live, "capacity_gib": 6})
    assert [(f.name, f.forces_replacement) for f in grown] == [("capacity_gib", False)]
    other = diff_properties("volume", live, {**live, "source": "/j.qcow2"})
    assert [(f.name, f.forces_replacement) for f in other] == [("source", True)]
    adopted = {k: v for k, v in live.items() if k not in ("source", "clone")}  # no record: the upload may be partial
    assert [f.name for f in diff_properties("volume", adopted, live) if f.forces_replacement] == ["source"]
    seed_live = {"capacity_gib": 1, "format": "raw", "base": None, **SEED_PROPS}
    assert diff_properties("cloudinit", seed_live, SEED_PROPS) == []
    changed = diff_properties("cloudinit", seed_live, {**SEED_PROPS, "user_data": "#!/bin/sh\n"})
    assert [(f.name, f.forces_replacement) for f in changed] == [("user_data", True)]
    pool = {"name": "p", "type": "dir", "path": "/srv/p"}
    assert diff_properties("pool", {**pool, "built": True}, pool) == []
    assert diff_properties("pool", {**pool, "built": True}, {**pool, "path": "/srv/q"})[0].forces_replacement
    seeded = diff_properties("vm", VM_PROPS, {**VM_PROPS, "cloud_init": "default/s@1"})
    assert [(f.name, f.forces_replacement) for f in seeded] == [("cloud_init", True)]


def test_check_knows_the_pools_a_plan_creates(provider: LibvirtProvider, tmp_path: Path) -> None:
    provider.read_all()
    vol = volume({"capacity_gib": 1, "pool": "images"})
    assert "storage pool 'images' does not exist" in provider.check("volume", vol)[0]
    assert provider.check("pool", {"name": "images", "type": "dir", "path": str(tmp_path / "img")}) == []
    assert provider.check("volume", vol) == []
    assert provider.check("cloudinit", {**SEED_PROPS, "pool": "images"}) == []
    clash = provider.check("pool", {"name": "other", "type": "dir", "path": str(tmp_path / "sandbox" / "pool")})
    assert clash and "is already the storage pool 'default'" in clash[0]
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in provider.check("pool", {"name": "f", "type": "dir",
                                                           "path": str(tmp_path / "file")})[0]
    image = qcow2(tmp_path / "img.qcow2", 2 * GIB)
    assert provider.check("volume", volume({"source": str(image)})) == []
    assert "smaller than the image's virtual size" in provider.check(
        "volume", volume({"source": str(image), "capacity_gib": 1}))[0]


def test_the_test_driver_cannot_upload() -> None:
    """What the sandbox documents: libvirt's test driver has no volume upload (the sandbox's volumes hold no data)."""
    conn = libvirt.open("test:///default")
    try:
        vol = conn.storagePoolLookupByName("default-pool").createXML(
            "<volume><name>v</name><capacity>1024</capacity></volume>", 0)
        with pytest.raises(libvirt.libvirtError, match="not supported"):
            vol.upload(conn.newStream(0), 0, 1, 0)
    finally:
        conn.close()
