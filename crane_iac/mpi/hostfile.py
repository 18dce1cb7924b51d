"""The MPI hostfile and OpenMPI's parameters, as texts rendered from the cluster's nodes (pure: no I/O). The head
node runs ``mpirun`` and is not in the hostfile: the ranks go to the compute nodes, ``slots`` each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    """A compute node as the hostfile names it: its container's name (a comment) and its address."""

    name: str
    address: str
    slots: int


def render_hostfile(cluster: str, nodes: Sequence[Node]) -> str:
    """OpenMPI's hostfile: one ``ADDRESS slots=N`` line per compute node, in node order. Addresses, not names: the
    containers share the host's read-only /etc/hosts, where their names are not."""
    lines = [f"# the compute nodes of MPI cluster {cluster}, written by crane: mpirun --hostfile THIS"]
    lines += [f"{node.address} slots={node.slots}  # {node.name}" for node in nodes]
    return "\n".join(lines) + "\n"


def render_mca_params(subnet: str) -> str:
    """The cluster user's ``~/.openmpi/mca-params.conf``: messages and OpenMPI's own control traffic over TCP on the
    cluster's network only (a container also has ``lo``, whose address every node shares), shared memory between
    the ranks of one node, and no single-copy mechanism (CMA needs ptrace rights a container's user lacks)."""
    return "\n".join([
        "# written by crane for this MPI cluster",
        "btl = self,vader,tcp",
        f"btl_tcp_if_include = {subnet}",
        f"oob_tcp_if_include = {subnet}",
        "btl_vader_single_copy_mechanism = none",
        "",
    ])
