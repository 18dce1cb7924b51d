"""Where a component's hosts sit on its network (the app domain's and the MPI cluster's alike): the ``index``-th host
at a fixed offset of the subnet, or, on a network whose subnet an address pool carved, the address the pool leased
to it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from crane_iac.resources.network import Network
from crane_iac.resources.registry import current_registry


def host_address(network: Network, first_host: int, index: int, leased: Mapping[int, str]) -> str:
    """The ``index``-th host's address: what a pool ``leased`` it, else the subnet's ``first_host + index``-th."""
    if (address := leased.get(index)) is not None:
        return str(address)
    assert network.ipv4 is not None
    return str(ipaddress.ip_network(network.ipv4)[first_host + index])


def leases_addresses(network: Network) -> bool:
    """Whether ``network`` takes its subnet from an address pool, so that its hosts lease theirs."""
    registry = current_registry()
    return registry is not None and (network.address, "ipv4") in registry.carved
