"""VM templates without a build (the sandbox runs nothing): where a disk's root file system is found, which bases
are disk images, and a stack's volume on a VM template of a library written by hand: it applies backed by the
template's disk, reads back as on that template (no change), warns when the base image changed, and holds the
template against ``crane template rm``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from crane_iac import Volume
from crane_iac.templates import digests
from crane_iac.templates.image_build import wants_image
from crane_iac.templates.images import Partition, parse_partitions, root_extent
from crane_iac.templates.library import Library, TemplateError
from crane_iac.templates.manifest import Base, Manifest, Playbook
from tests.conftest import ProjectDir, assert_clean_error, ok
from tests.templates.helpers import add_template, fake_root

GPT_ROOT = "0fc63daf-8483-4772-8e79-3d69d8477de4"
STACK = """
from crane_iac import VM, StoragePool, Volume
pool = StoragePool("disks", path="/var/lib/crane-vm-templates-unit")
root = Volume("web-root", pool=pool, template="{template}"{extra})
VM("web", vcpus=1, memory_mib=128, volumes=[root])
"""


def add_vm_template(library: Library, name: str, base: Path, *, disk_bytes: int = 64 << 20) -> Manifest:
    """Record VM template ``name`` on the image file ``base`` (its digest now), as a build would."""
    manifest = Manifest(name=name, kind="vm", base=Base("image", str(base), digests.file_digest(base)),
                        playbook=Playbook("/p/site.yml", "sha256:p"), built_at="2025-01-01T00:00:00+00:00",
                        built_by="root@test", content_digest="sha256:img", disk_bytes=disk_bytes)
    library.path(name).mkdir(parents=True)
    library.save(manifest)
    return manifest


def test_partx_listing_is_read() -> None:
    text = "NR START SECTORS TYPE SCHEME\n1 262144 4192223 0FC63DAF-8483-4772-8E79-3D69D8477DE4 gpt\n" \
           "14 2048 6144 21686148-6449-6e6f-744e-656564454649 gpt\n"
    assert parse_partitions(text) == [Partition(1, 262144, 4192223, GPT_ROOT, "gpt"),
                                      Partition(14, 2048, 6144, "21686148-6449-6e6f-744e-656564454649", "gpt")]


def test_the_root_is_the_whole_disk_or_the_largest_linux_partition() -> None:
    assert root_extent({"TYPE": "ext4", "USAGE": "filesystem"}, [], "base x") == (0, None)
    cloud = [Partition(1, 262144, 4192223, GPT_ROOT, "gpt"), Partition(14, 2048, 6144, "bios", "gpt"),
             Partition(15, 8192, 253952, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "gpt")]
    assert root_extent({"PTTYPE": "gpt"}, cloud, "base x") == (262144 * 512, 4192223 * 512)
    mbr = [Partition(1, 2048, 1000, "0x83", "dos"), Partition(2, 4096, 9000, "0x83", "dos")]
    assert root_extent({"PTTYPE": "dos"}, mbr, "base x") == (4096 * 512, 9000 * 512)


@pytest.mark.parametrize(("probe", "partitions", "message"), [
    ({}, [], "neither a file system nor a partition table"),
    ({"TYPE": "LVM2_member", "USAGE": "raid"}, [], "holds LVM2_member on the whole disk"),
    ({"PTTYPE": "dos"}, [Partition(1, 2048, 1000, "0x8e", "dos")],
     "no Linux file system partition (partitions 1: 0x8e)"),
])
def test_a_disk_without_a_plain_root_is_refused(probe: dict[str, str], partitions: list[Partition],
                                                message: str) -> None:
    with pytest.raises(TemplateError, match=r"base x .*" + message.replace("(", r"\(").replace(")", r"\)")):
        root_extent(probe, partitions, "base x")


def test_image_bases_are_told_from_container_roots(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"QFI\xfb")
    add_vm_template(library, "img", image)
    add_template(library, "tools", "dir", str(fake_root(tmp_path / "root")))
    assert wants_image(library, str(image)) and wants_image(library, "default/base.qcow2")
    assert wants_image(library, "img") and wants_image(library, str(tmp_path / "missing.qcow2"))  # said missing
    assert not wants_image(library, "/") and not wants_image(library, "tools") and not wants_image(library, "nope")


def test_a_volume_on_a_template_takes_nothing_else() -> None:
    with pytest.raises(ValueError, match="at most one of base, source, clone and template, not base and template"):
        Volume("v", base="/x.qcow2", template="img", capacity_gib=1)
    with pytest.raises(ValueError, match="a qcow2 overlay of its disk: drop format='raw'"):
        Volume("v", template="img", format="raw")
    assert Volume("v", template="img").properties()["template"] == "img"
    assert "template" not in Volume("w", capacity_gib=1).properties()


def project(tmp_path: Path, template: str = "img", extra: str = "") -> tuple[ProjectDir, Path, Library]:
    p = ProjectDir(tmp_path / "project")
    p.root.mkdir()
    p.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"QFI\xfb the base")
    library = Library(p.root / ".crane" / "templates")
    add_vm_template(library, "img", base)
    add_template(library, "tools", "dir", str(fake_root(tmp_path / "root")))
    p.write_stack(STACK.format(template=template, extra=extra))
    return p, base, library


def test_a_volume_on_a_template_is_backed_by_its_disk_and_reads_back_as_on_it(tmp_path: Path) -> None:
    p, base, library = project(tmp_path)
    ok(p, "apply", "--auto-approve")
    state = json.loads(ok(p, "state", "show", "volume.web-root"))
    assert state["properties"]["template"] == "img", state
    assert state["properties"]["base"] is None and state["properties"]["capacity_gib"] == 1, state
    assert p.crane("plan", "--detailed-exitcode").code == 0  # backed by the library's disk: read back as on img
    assert_clean_error(p.crane("template", "rm", "img"), "template 'img' is in use by main: volume.web-root")
    base.write_bytes(b"QFI\xfb the base, upgraded")
    plan = ok(p, "plan")
    assert f"Warning: volume.web-root: template 'img' is stale: its base '{base}' changed" in plan, plan
    ok(p, "destroy", "--auto-approve")
    ok(p, "template", "rm", "img")
    assert library.names() == ["tools"]


def test_a_larger_capacity_grows_the_volume_over_the_template(tmp_path: Path) -> None:
    p, _, _ = project(tmp_path, extra=", capacity_gib=3")
    ok(p, "apply", "--auto-approve")
    assert json.loads(ok(p, "state", "show", "volume.web-root"))["properties"]["capacity_gib"] == 3
    assert p.crane("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(("template", "message"), [
    ("nope", "no template 'nope' in the library"),
    ("tools", "template 'tools' is a container's layer, not a VM's disk image"),
])
def test_a_volume_on_a_missing_or_container_template_is_a_plan_error(tmp_path: Path, template: str,
                                                                     message: str) -> None:
    p, _, _ = project(tmp_path, template=template)
    assert_clean_error(p.crane("plan"), "volume.web-root", message)


def test_an_app_domain_takes_a_template_volume_as_its_image(tmp_path: Path) -> None:
    """hosts="vm" on a cloud image: the image a volume on a VM template, each VM's root backed by it."""
    p, _, _ = project(tmp_path)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    p.write_stack(f"""
from crane_iac import AppDomain, Network, Volume, WebTier

lan = Network("vm-net", mode="nat", ipv4="10.84.0.0/24", dhcp=False)
image = Volume("golden", template="img")
AppDomain("shop", network=lan, hosts="vm", image=image, ssh_key="{key}", web=WebTier(size=1))
""")
    plan = json.loads(ok(p, "plan", "--json"))
    after = {c["address"]: c["after"] for c in plan["changes"]}
    assert after["volume.golden"]["template"] == "img", after["volume.golden"]
    assert after["appdomain.shop/volume.web-1-root"]["base"] == "default/golden"
    ok(p, "apply", "--auto-approve")
    assert p.crane("plan", "--detailed-exitcode").code == 0
    assert_clean_error(p.crane("template", "rm", "img"), "in use by main: volume.golden")
