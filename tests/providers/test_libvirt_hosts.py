"""The libvirt provider's seam: a URI names a libvirtd host, no URI the sandbox; and each kind's module reads back
what it made. libvirt's ``test:///default`` driver stands in for a libvirtd host here (it runs in this process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crane_iac.errors import ProviderError
from crane_iac.objects import Owner
from crane_iac.providers.base import CreateRequest, DeleteRequest, Provider, UpdateRequest
from crane_iac.providers.libvirt import LibvirtProvider
from crane_iac.providers.libvirt.host import LibvirtdHost
from crane_iac.providers.libvirt.sandbox import SandboxHost

VM: dict[str, Any] = {"vcpus": 1, "max_vcpus": 1, "memory_mib": 128, "max_memory_mib": 128, "running": True,
                      "nics": [{"network": "lan", "mac": "52:54:00:00:00:07"}], "disks": [], "autostart": False,
                      "description": None, "kernel": None, "initrd": None, "cmdline": None, "cloud_init": None}
NETWORK = {"mode": "nat", "bridge": None, "vlan": None, "ipv4": "10.9.0.0/24", "ipv6": None, "dhcp": True}
POOL = {"name": "images", "type": "dir", "path": "/srv/crane-test-images"}
VOLUME = {"capacity_gib": 1, "pool": "images", "format": "raw", "base": None, "source": None, "clone": None}
SEED = {"pool": "images", "user_data": "#!/bin/sh\n", "meta_data": {"instance-id": "i"}, "network_config": None}


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    p = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    yield p
    p.close()


def test_the_provider_names_its_type_and_lists_every_kind(sandbox: LibvirtProvider) -> None:
    assert sandbox.provider_type == "libvirt"
    assert sandbox.listed_kinds == frozenset(sandbox.kinds)
    assert Provider.listed_kinds.fget(sandbox) == sandbox.listed_kinds  # type: ignore[attr-defined]


def test_no_uri_is_the_sandbox_and_a_uri_a_libvirtd_host(sandbox: LibvirtProvider, tmp_path: Path) -> None:
    assert isinstance(sandbox.host, SandboxHost) and sandbox.max_parallelism == 1
    uri = LibvirtProvider("test:///default", sandbox_dir=tmp_path / "unused", mutating=False)
    try:
        assert isinstance(uri.host, LibvirtdHost) and uri.max_parallelism is None
        assert uri.domains.domain_type == "test"  # the test driver runs domains of its own type
        live = {(x.kind, x.physical): x for x in uri.read_all()}
        # the running domain is read from the active list; its address only from DHCP leases (none on this driver)
        vm = live[("vm", "test")]
        assert vm.properties["running"] and vm.outputs["addresses"] == [None]
    finally:
        uri.close()
    assert not (tmp_path / "unused").exists()  # a host of its own: nothing of the sandbox's


def test_the_sandbox_simulates_a_running_guests_address_the_same_every_time(sandbox: LibvirtProvider) -> None:
    sandbox.create(CreateRequest("network", "lan", NETWORK, Owner("s", "network.lan")))
    made = sandbox.create(CreateRequest("vm", "web", VM, Owner("s", "vm.web")))
    (address,) = made.outputs["addresses"]
    assert address.startswith("10.9.0.") and made.outputs["ipv4"] == address
    assert [x.outputs["ipv4"] for x in sandbox.read_all() if x.kind == "vm"] == [address]
    stopped = sandbox.update(UpdateRequest("vm", "web", VM, {**VM, "running": False}))
    assert stopped.outputs["addresses"] == [None]



def test_a_vms_ipv6_outputs_are_its_slaac_addresses_running_or_not(sandbox: LibvirtProvider) -> None:
    """On a network announcing a pool's /64 for SLAAC the VM's NIC has its MAC's EUI-64 there: the outputs say so
    as created, restarted, stopped and read in bulk; a NIC on a network without one has None."""
    slaac = "fd00:9::5054:ff:fe00:7"  # 52:54:00:00:00:07 in fd00:9::/64
    sandbox.create(CreateRequest("network", "lan", {**NETWORK, "ipv6": "fd00:9::/64", "leases": ["ipv6"]},
                                 Owner("s", "network.lan")))
    sandbox.create(CreateRequest("network", "wan", {**NETWORK, "ipv4": "10.10.0.0/24"}, Owner("s", "network.wan")))
    nics = [{"network": "lan", "mac": "52:54:00:00:00:07", "ipv6": slaac},
            {"network": "wan", "mac": "52:54:00:00:00:08"}]
    vm = {**VM, "nics": nics}
    made = sandbox.create(CreateRequest("vm", "web", vm, Owner("s", "vm.web")))
    restarted = sandbox.update(UpdateRequest("vm", "web", vm, {**vm, "max_vcpus": 2}))
    stopped = sandbox.update(UpdateRequest("vm", "web", {**vm, "max_vcpus": 2}, {**vm, "max_vcpus": 2,
                                                                                 "running": False}))
    (read,) = [x for x in sandbox.read_all() if x.kind == "vm"]
    for live in (made, restarted, stopped, read):
        assert (live.outputs["ipv6"], live.outputs["ipv6_addresses"]) == (slaac, [slaac, None]), live.outputs
    assert stopped.outputs["addresses"] == [None, None] and read.properties["nics"] == stopped.properties["nics"]
    assert made.outputs["addresses"][1].startswith("10.10.0.")  # IPv4 from DHCP, as before


@pytest.mark.parametrize(("kind", "physical", "props"), [
    ("pool", "images", POOL), ("network", "lan", NETWORK), ("volume", "disk", VOLUME), ("cloudinit", "seed", SEED),
    ("vm", "web", {**VM, "nics": [], "running": False}),
])
def test_each_kind_reads_back_what_it_made_until_it_is_deleted(sandbox: LibvirtProvider, kind: str, physical: str,
                                                                props: dict[str, Any]) -> None:
    if kind in ("volume", "cloudinit"):
        sandbox.create(CreateRequest("pool", "images", POOL, Owner("s", "pool.images")))
    made = sandbox.create(CreateRequest(kind, physical, props, Owner("s", f"{kind}.{physical}")))
    handler = sandbox.handlers[kind]
    assert handler.read(physical, made.properties) == made
    sandbox.delete(DeleteRequest(kind, physical, made.properties))
    assert handler.read(physical, made.properties) is None


@pytest.mark.parametrize("kind", ["network", "cloudinit"])  # a pool's one: starting it (test_libvirt_storage.py)
def test_kinds_without_in_place_changes_refuse_an_update(sandbox: LibvirtProvider, kind: str) -> None:
    with pytest.raises(ProviderError, match=f"{kind} 'x' cannot be changed in place"):
        sandbox.update(UpdateRequest(kind, "x", {}, {}))


def test_the_node_file_is_written_only_once_something_changed(tmp_path: Path) -> None:
    p = LibvirtProvider(None, sandbox_dir=tmp_path, mutating=True)
    p.read_all()
    p.checkpoint()
    assert not (tmp_path / "sandbox.xml").exists()
    p.create(CreateRequest("network", "lan", NETWORK, Owner("s", "network.lan")))
    p.checkpoint()
    assert "<name>lan</name>" in (tmp_path / "sandbox.xml").read_text()
    p.close()
