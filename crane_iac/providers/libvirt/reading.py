"""The bulk read: every pool, volume, network and domain in one list call per kind, then XML parsing; what libvirt
cannot report (a volume's origin, a seed's contents, a pool's ``built``: ``rules.UNREADABLE``) is left out: the
engine has it in state. A stopped pool's volumes cannot be listed: the provider says so (``unlisted``), and a
container's directory in such a pool is named as a dir pool names its volumes."""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET

from crane_iac.objects import Live
from crane_iac.providers.libvirt import xml as lx
from crane_iac.providers.libvirt.addresses import GuestAddresses, NicFacts, nic_networks
from crane_iac.providers.libvirt.containers import container_outputs
from crane_iac.providers.libvirt.host import DhcpRange, Host
from crane_iac.providers.libvirt.listing import ParsedDomains
from crane_iac.providers.libvirt.networks import network_live
from crane_iac.providers.libvirt.pools import list_pools, read_pool


def read_all(host: Host, addresses: GuestAddresses) -> list[Live]:
    """Every object of the provider's kinds (a seed is a volume of its pool); VMs with the addresses they hold, and
    containers (``exe`` domains) with their fixed ones."""
    result: list[Live] = []
    pools = list_pools(host.conn)
    pool_by_dir = {path: name for _, name, path in pools}
    pool_lives = [read_pool(pool) for pool, _, _ in pools]
    result.extend(pool_lives)
    volume_by_path: dict[str, str] = {}
    stopped: dict[str, str] = {}  # a stopped pool's directory → its name
    for (pool, pool_name, path), pool_live in zip(pools, pool_lives, strict=True):
        if not pool_live.properties["active"]:
            stopped[path] = pool_name
            continue
        for vol in pool.listAllVolumes(0):
            props, outputs = lx.parse_volume(ET.fromstring(vol.XMLDesc(0)), pool_name, pool_by_dir)
            volume_by_path[outputs["path"]] = f"{pool_name}/{vol.name()}"
            result.append(Live("volume", vol.name(), props, outputs))
    ranges: dict[str, DhcpRange] = {}
    facts = NicFacts()
    for net in host.conn.listAllNetworks(0):
        root = ET.fromstring(net.XMLDesc(0))
        dhcp = lx.dhcp_range(root)
        if dhcp is not None:
            ranges[net.name()] = dhcp
        facts.learn(net.name(), root)
        result.append(network_live(net.name(), root))
    domains, autostart = host.list_domains()
    listing = ParsedDomains(host.listing_file)
    parsed = []
    lease_networks: set[str] = set()  # asked for leases only where a running guest has a NIC
    for name, xml, running in domains:
        domain = listing.facts(xml)
        owner = domain.owner
        if domain.container and stopped:
            volume_by_path.update(_stopped_volumes(domain.directories, stopped, volume_by_path))
        props = domain.finished(running=running, autostart=name in autostart, volume_by_path=volume_by_path)
        if domain.container:
            result.append(Live("container", name, props, container_outputs(domain.uuid, props),
                               owner.stack if owner else None, owner.address if owner else None))
            continue
        if facts.reserved or facts.slaac:
            facts.fill(props)
        if running:
            lease_networks |= nic_networks(props)
        parsed.append((name, domain.uuid, props, owner))
    listing.save()
    leases = addresses.leases(ranges, lease_networks) if lease_networks else {}
    for name, uuid, props, owner in parsed:
        result.append(Live("vm", name, props, addresses.outputs(uuid, props, leases, ranges),
                           owner.stack if owner else None, owner.address if owner else None))
    return result


def _stopped_volumes(directories: list[str], stopped: dict[str, str], known: dict[str, str]) -> dict[str, str]:
    """``pool/volume`` by directory for the directories a container mounts from stopped pools: libvirt cannot list
    those volumes, but a dir pool names each by its file name in the pool's directory."""
    found = {}
    for directory in directories:
        parent, name = posixpath.split(directory)
        if directory not in known and parent in stopped and name:
            found[directory] = f"{stopped[parent]}/{name}"
    return found
