"""Which kinds two libvirt endpoints share, from their URIs (no connection): one daemon's drivers share its network
and storage drivers, one driver of one daemon twice shares everything, and everything else shares nothing."""

from __future__ import annotations

import libvirt
import pytest

from crane_iac.providers.libvirt.sharing import DAEMON_SHARED, KINDS, shared_kinds
from crane_iac.providers.registry import sharing_rule

STORAGE_AND_NETWORKS = {"network", "pool", "volume", "snapshot", "cloudinit"}


def kinds(a: str | None, b: str | None) -> set[str]:
    return set(shared_kinds({"uri": a}, {"uri": b}))


@pytest.mark.parametrize(("a", "b"), [
    ("qemu:///system", "lxc:///system"),
    ("qemu+unix:///system", "lxc:///system/"),  # the local transport spelt out, a trailing slash
    ("qemu:///session", "lxc:///session"),
    ("qemu+ssh://root@dc2/system", "lxc+ssh://root@dc2/system"),
    ("qemu://dc2/system", "lxc+tls://DC2/system"),  # no transport with a host is TLS; host names are not case-sensitive
    ("qemu:///system?socket=/run/x.sock", "lxc:///system?socket=/run/x.sock"),
])
def test_two_drivers_of_one_daemon_share_its_networks_and_storage(a: str, b: str) -> None:
    assert kinds(a, b) == kinds(b, a) == STORAGE_AND_NETWORKS == DAEMON_SHARED


@pytest.mark.parametrize(("a", "b"), [
    ("qemu:///system", "lxc:///session"),  # the system daemon and the user's own
    ("qemu+ssh://root@dc1/system", "lxc+ssh://root@dc2/system"),
    ("qemu+ssh://root@dc2/system", "lxc+ssh://admin@dc2/system"),  # maybe one daemon: sharing is never assumed
    ("qemu+ssh://dc2:2222/system", "lxc+ssh://dc2/system"),
    ("qemu+ssh://dc2/system", "lxc+tls://dc2/system"),
    ("qemu:///system", "lxc:///system?socket=/run/other.sock"),
    ("qemu:///embed?root=/tmp/x", "lxc:///system"),  # an embedded driver runs in the client
    ("esx://vc1/", "esx://vc1/"),  # a client-side driver: no daemon rule known
    (None, None),  # two sandboxes: each endpoint's own
    (None, "qemu:///system"),
    ("test:///default", "test:///tmp/node.xml"),
    ("test:///tmp/node.xml", "test:///tmp/node.xml"),  # each connection loads its own copy of the file
    ("qemu://[broken/system", "lxc:///system"),
])
def test_endpoints_on_different_daemons_share_nothing(a: str | None, b: str | None) -> None:
    assert kinds(a, b) == kinds(b, a) == set()


@pytest.mark.parametrize(("a", "b"), [("qemu:///system", "qemu+unix:///system"), ("test:///default", "test:///default")])
def test_one_driver_of_one_daemon_twice_shares_every_kind(a: str, b: str) -> None:
    assert kinds(a, b) == set(KINDS)


def test_the_test_driver_default_is_one_hypervisor_for_every_connection_of_a_process() -> None:
    """What the rule says of test:///default, as the driver does it: a network (or a domain) defined through one
    connection is there through another, and a test://FILE connection has its own copy."""
    first, second = libvirt.open("test:///default"), libvirt.open("test:///default")
    try:
        first.networkDefineXML("<network><name>crane-shared-probe</name></network>")
        try:
            assert "crane-shared-probe" in [n.name() for n in second.listAllNetworks(0)]
            assert [d.name() for d in first.listAllDomains(0)] == [d.name() for d in second.listAllDomains(0)]
        finally:
            second.networkLookupByName("crane-shared-probe").undefine()
    finally:
        first.close()
        second.close()


def test_the_registry_finds_the_rule_beside_the_opener_without_connecting() -> None:
    assert sharing_rule("libvirt") is shared_kinds
    assert sharing_rule("no-such-type") is None
