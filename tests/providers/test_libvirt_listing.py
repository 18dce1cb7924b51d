"""What a bulk listing remembers of the domains it parsed (providers/libvirt/listing.py): the same properties as a
parse, never a stale one, on the sandbox and from the file alone."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from crane_iac.providers.base import CreateRequest, Owner
from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.listing import ParsedDomains, runs

VM_XML = """<domain type='test' id='{id}'>
  <name>web</name>
  <uuid>7bc8303d-308e-4278-aee5-4f87bda36cbe</uuid>
  <metadata><crane:owner xmlns:crane="https://crane-iac.dev/xmlns/owner/1" stack="s" address="vm.web"/></metadata>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>{memory}</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/pools/default/root.qcow2'/><target dev='vda'/></disk>
    <disk type='volume' device='disk'><source pool='data' volume='extra'/><target dev='vdb'/></disk>
    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='lan'/></interface>
  </devices>
</domain>"""

CONTAINER_XML = """<domain type='lxc'>
  <name>box</name>
  <uuid>0b9a2fd0-5a4f-4c39-8a7e-2f6c3a1c1e11</uuid>
  <memory unit='KiB'>262144</memory>
  <vcpu>1</vcpu>
  <os><type>exe</type><init>/bin/sh</init><initenv name='A'>b</initenv></os>
  <devices>
    <filesystem type='mount'><source dir='/srv/root'/><target dir='/'/></filesystem>
    <filesystem type='mount'><source dir='/pools/data/site'/><target dir='/var/www'/></filesystem>
  </devices>
</domain>"""

VOLUMES = {"/pools/default/root.qcow2": "default/root", "/pools/data/site": "data/site"}


def listed_once(cache: Path, *xmls: str) -> None:
    """A listing of ``xmls`` that keeps what it parsed in ``cache``."""
    first = ParsedDomains(cache)
    for xml in xmls:
        first.facts(xml)
    first.save()


def parsed_directly(xml: str, *, running: bool = True) -> dict[str, Any]:
    root = ET.fromstring(xml)
    parse = lx.parse_container if lx.is_container(root) else lx.parse_domain
    return parse(root, running=running, autostart=True, volume_by_path=VOLUMES)


def test_remembered_facts_are_what_a_parse_gives(tmp_path: Path) -> None:
    cache = tmp_path / "domains.cache"
    vm, container = VM_XML.format(id=1, memory=262144), CONTAINER_XML
    first = ParsedDomains(cache)
    facts = [first.facts(vm), first.facts(container)]
    first.save()
    assert first.parsed == 2 and cache.exists()
    again = ParsedDomains(cache)
    remembered = [again.facts(vm), again.facts(container)]
    assert again.parsed == 0
    for fresh, kept, xml in zip(facts, remembered, (vm, container), strict=True):
        assert kept.owner == fresh.owner and kept.uuid == fresh.uuid and kept.container == fresh.container
        for one in (fresh, kept):
            assert one.finished(running=True, autostart=True, volume_by_path=VOLUMES) == parsed_directly(xml)
    assert remembered[0].owner is not None and remembered[0].owner.address == "vm.web"
    assert remembered[1].directories == ["/srv/root", "/pools/data/site"]


def test_changed_xml_is_parsed_again_and_a_new_runtime_id_is_not_a_change(tmp_path: Path) -> None:
    cache = tmp_path / "domains.cache"
    listed_once(cache, VM_XML.format(id=1, memory=262144))
    again = ParsedDomains(cache)
    renumbered = again.facts(VM_XML.format(id=77, memory=262144))
    changed = again.facts(VM_XML.format(id=1, memory=524288))
    assert again.parsed == 1
    assert renumbered.props["memory_mib"] == 256 and changed.props["memory_mib"] == 512


def test_each_use_is_its_own_copy(tmp_path: Path) -> None:
    cache = tmp_path / "domains.cache"
    xml = VM_XML.format(id=1, memory=262144)
    listed_once(cache, xml)
    again = ParsedDomains(cache)
    one = again.facts(xml)
    one.props["nics"][0]["ipv4"] = "10.0.0.9"  # what the read adds to a NIC it knows more of
    one.finished(running=False, autostart=False, volume_by_path=VOLUMES)
    other = again.facts(xml)
    assert other.props["nics"] == [{"network": "lan", "mac": "52:54:00:00:00:01"}]
    assert other.props["disks"] == ["/pools/default/root.qcow2", "data/extra"]


def test_a_file_from_another_parser_or_damaged_is_ignored_and_rewritten(tmp_path: Path) -> None:
    cache = tmp_path / "domains.cache"
    xml = VM_XML.format(id=1, memory=262144)
    listed_once(cache, xml)
    header, _, body = cache.read_text().partition("\n")
    key = body.partition("\t")[0]
    for text in (f"another-parser\n{body}", f"{header}\n{key}\t[not json\n", "\x00\xff", ""):
        cache.write_text(text)
        reader = ParsedDomains(cache)
        assert reader.facts(xml).finished(running=True, autostart=True, volume_by_path=VOLUMES) == \
            parsed_directly(xml)
        assert reader.parsed == 1
        reader.save()
        assert cache.read_text().partition("\n")[0] == header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["domains.cache"]  # no temporary file left


def test_only_the_domains_listed_last_are_kept(tmp_path: Path) -> None:
    cache = tmp_path / "domains.cache"
    listed_once(cache, VM_XML.format(id=1, memory=262144), CONTAINER_XML)
    second = ParsedDomains(cache)
    second.facts(CONTAINER_XML)
    second.save()  # one domain gone: written without it
    assert len(cache.read_text().splitlines()) == 2
    third = ParsedDomains(cache)
    third.facts(CONTAINER_XML)
    assert third.parsed == 0


def test_runtime_id_says_whether_it_runs() -> None:
    assert runs(VM_XML.format(id=3, memory=1))
    assert not runs(CONTAINER_XML)
    assert not runs("<domain type='test'><name>id='4'</name></domain>")


def test_the_sandbox_sees_a_change_made_behind_its_back(tmp_path: Path) -> None:
    """The sandbox keeps a listing file; a domain changed by another libvirt client is read as it is now."""
    props = {"vcpus": 1, "max_vcpus": 2, "memory_mib": 256, "max_memory_mib": 1024, "nics": [], "disks": [],
             "running": False, "autostart": False, "description": None}
    p = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    p.create(CreateRequest("vm", "a", props, Owner("s", "vm.a")))
    p.close()
    reader = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=False)
    first = {x.physical: x for x in reader.read_all() if x.kind == "vm"}
    reader.close()
    assert (tmp_path / "sandbox-domains.cache").exists()
    assert first["a"].properties["memory_mib"] == 256

    other = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)  # a second client, saved when closed
    root = ET.fromstring(other.conn.lookupByName("a").XMLDesc(0))
    current = root.find("currentMemory")
    assert current is not None
    current.text, current.attrib["unit"] = "524288", "KiB"
    ET.SubElement(root, "description").text = "edited by hand"
    other.conn.defineXML(ET.tostring(root, encoding="unicode"))
    other.host.changing("vm", "a")
    other.close()

    again = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=False)
    after = {x.physical: x for x in again.read_all() if x.kind == "vm"}
    again.close()
    assert after["a"].properties["memory_mib"] == 512
    assert after["a"].properties["description"] == "edited by hand"
