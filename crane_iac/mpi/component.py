"""MPICluster: CRANE's scientific PaaS unit, one component: a head node and N compute nodes with OpenMPI.

``MPICluster("pi", network=lan, nodes=4)`` expands, under ``mpicluster.pi``, into LXC containers (``head``,
``node-1`` … ``node-N``) with fixed addresses, the directory volume they all share (``shared``: the cluster user's
home, the work directory and the hostfile), two SSH keys (``key``, crane's, which logs in as root; ``user-key``, the
cluster user's, which the nodes trust one another with), and one configuration run on the head (``head``). Each
node's own set-up (the cluster user, its SSH host key on the shared disk, sshd) is its init's, done at every start
(files/init.sh); the head's run checks OpenMPI, places the user's key, pins every node's host key in the shared
known_hosts and writes the hostfile and OpenMPI's parameters (playbooks/head.yml).

Resizing changes only what it must: ``nodes`` 4 → 6 adds node-5 and node-6 and runs the head's configuration again
(the hostfile and known_hosts gain two lines); 6 → 4 removes node-6 and node-5, the highest, after the head's run has
taken them out of the hostfile.

Addresses: the head takes the network's ``first_host``-th address and node-i the next ones (``first_host + i``), so a
node keeps its address whatever the size; on a network whose subnet comes from an address pool each node leases its
own instead. Give a cluster a network of its own (or one whose DHCP clients cannot be handed these addresses).

The shared directory is one host directory passed into every container: the nodes must be on one libvirt host
(docs/decisions/mpi-clusters.md says why, and what spanning hosts would take).

With ``scheduler="slurm"`` each node's init also runs munged and slurmctld (the head) or slurmd (a compute node),
files/slurm-init.sh; the head's run places the cluster's munge key (a key derived from the project's, passed as a
``secrets`` file) and slurm.conf (slurm.py) on the shared disk, and on a resize drains the nodes that go, waits for
their jobs and restarts the controller before the nodes are deleted (playbooks/roles/head/tasks/slurm.yml).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, InstanceOf, model_validator

from crane_iac.mpi.hostfile import Node, render_hostfile, render_mca_params
from crane_iac.mpi.slurm import MUNGE_DIR, PARTITION, SLURM_DIR, SlurmNode, render_slurm_conf
from crane_iac.resources.base import Output, Resource, export
from crane_iac.resources.component import Component
from crane_iac.resources.configuration import Configuration
from crane_iac.resources.container import Container
from crane_iac.resources.hostaddresses import host_address, leases_addresses
from crane_iac.resources.network import Network
from crane_iac.resources.pool import StoragePool
from crane_iac.resources.ssh_key import SshKey
from crane_iac.resources.volume import Volume

_HERE = Path(__file__).resolve().parent
#: the nodes' init, files/init.sh, passed in the container's environment (as the app domain's: the definition names
#: no path of crane's installation)
INIT = ["/bin/sh", "-c", 'eval "$(printf %s "$CRANE_INIT" | base64 -d)"']
PLAYBOOKS = "crane:mpi"
#: where every node mounts the shared directory (a directory of the host's root, empty on Debian: the mount point
#: must exist in the read-only root)
SHARED = "/srv"
HOME = f"{SHARED}/home"
WORK_DIR = f"{SHARED}/work"
HOSTFILE = f"{SHARED}/hostfile"
#: the cluster user, who runs mpirun and the ranks (OpenMPI refuses root without --allow-run-as-root); its uid and gid
#: own the shared directory's home and work directory on the host too
USER = "mpi"
UID = 2600
#: seconds the head's run waits for every node's init to have made its host key
HOST_KEY_TIMEOUT = 60
#: seconds the head's run waits, when the cluster shrinks, for the jobs running on the nodes that go to end (the
#: nodes are drained first: no new job starts there); past it the run fails and the nodes stay, drained
DRAIN_TIMEOUT = 3600
#: seconds the head's run waits for slurmctld to answer and for every node's slurmd to register
SLURM_TIMEOUT = 120


R = TypeVar("R", bound=Resource)


def make(cls: Callable[..., R], name: str, /, **fields: Any) -> R:
    """``cls(name, **fields)``: a resource built positionally by name (as the app domain's ``make``)."""
    return cls(name, **fields)


def init_script(name: str = "init.sh") -> str:
    """files/NAME in base64: an environment value without the characters libvirt 9.0 does not escape there."""
    return base64.b64encode((_HERE / "files" / name).read_bytes()).decode()


def munge_key_name(cluster: str) -> str:
    """The name of the key crane derives from the project's key for cluster ``cluster`` (its address): its Slurm's
    munge key (crane_iac/projectkey.py)."""
    return f"crane munge key\0{cluster}"


class MPICluster(Component):
    """A virtual cluster for MPI jobs: ``MPICluster("pi", network=lan, nodes=4, slots_per_node=2)``.

    Every node is an LXC container on the endpoint (``lxc:///system``) running the host's own programs, OpenMPI
    among them, with ``vcpus`` and ``memory_mib`` each; the hostfile gives each compute node ``slots_per_node``
    slots, so ``mpirun -np nodes*slots_per_node --hostfile /srv/hostfile PROGRAM`` fills the cluster. ``pool`` holds
    the shared directory. The cluster exports ``<name>``: the head's address, the hostfile's path, the work
    directory and the ssh command (an argv) that logs in to the head as the cluster user (``crane output NAME``).
    Where crane cannot reach the guests (the embedded sandbox) the head's run is planned and recorded as skipped.

    ``template`` names a container template of the endpoint's template library (``crane template build NAME --from /
    --playbook FILE``, docs/guides/templates.md) that every node runs on: the libraries a job needs, layered over the
    host's system; the plan reports it stale when its base changed.

    ``scheduler="slurm"`` adds Slurm (Debian's slurm-wlm, with munge): slurmctld on the head, slurmd on every
    compute node (a Slurm node of ``slots_per_node`` CPUs, named as its container), all in the partition ``main``;
    a munge key of the cluster's own, derived by crane from the project's key and never in state, plans or logs;
    slurm.conf rendered from the nodes (slurm.py) and rewritten by the head's run on a resize, which drains the
    nodes that go and waits for their jobs before they are deleted (playbooks/roles/head/tasks/slurm.yml).

    Not built yet (issue 20): VMs as nodes.
    """

    kind = "mpicluster"

    network: InstanceOf[Network]
    nodes: int = Field(default=4, ge=1, le=200)
    slots_per_node: int = Field(default=2, ge=1, le=1024)
    vcpus: int = Field(default=1, ge=1)
    memory_mib: int = Field(default=256, ge=64)
    pool: InstanceOf[StoragePool] | str = "default"
    template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    scheduler: str | None = None
    first_host: int = Field(default=10, ge=2)
    drain_timeout: int = Field(default=DRAIN_TIMEOUT, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> MPICluster:
        if self.scheduler is not None and self.scheduler != "slurm":
            raise ValueError(f"scheduler {self.scheduler!r}: crane knows scheduler=None (mpirun over SSH) and "
                             "'slurm'")
        if self.network.ipv4 is None:
            raise ValueError(f"network {self.network.name!r} has no ipv4 subnet to give the nodes addresses from")
        subnet = ipaddress.ip_network(self.network.ipv4)
        if self.first_host + self.nodes > subnet.num_addresses - 2:
            raise ValueError(f"network {self.network.name!r} ({subnet}) has no room for {1 + self.nodes} nodes "
                             f"from its address {self.first_host}: use a larger subnet, a lower first_host or fewer "
                             "nodes")
        return self

    def node_address(self, index: int) -> str:
        """The ``index``-th node's address: 0 the head, i node-i. On a network whose subnet comes from an address
        pool, the one the pool leased to it; else the fixed offset ``first_host + index`` in the subnet."""
        return host_address(self.network, self.first_host, index, getattr(self, "leased_addresses", {}))

    def _pooled(self) -> bool:
        return leases_addresses(self.network)

    def build(self) -> None:
        #: node index → the address an address pool leased it
        self.leased_addresses: dict[int, str] = {}
        if not self.valid:  # the fields' errors are reported; there is nothing sound to expand
            return
        self.key = make(SshKey, "key")
        self.user_key = make(SshKey, "user-key")
        self.shared = make(Volume, "shared", pool=self.pool, format="dir")
        self.head = self._node("head", 0)
        self.compute = [self._node(f"node-{i}", i) for i in range(1, self.nodes + 1)]
        nodes = [Node(host.physical_name, self.node_address(i), self.slots_per_node)
                 for i, host in enumerate(self.compute, start=1)]
        # each node's host key is on the shared disk under its name in the cluster (``host_key``)
        everyone = [{"name": host.physical_name, "host_key": host.name, "address": self.node_address(i)}
                    for i, host in enumerate([self.head, *self.compute])]
        assert self.network.ipv4 is not None
        files = {"hostfile": render_hostfile(self.physical_name, nodes),
                 "mca-params.conf": render_mca_params(self.network.ipv4)}
        slurm: dict[str, Any] = {}
        if self.scheduler == "slurm":
            files["slurm.conf"] = render_slurm_conf(
                self.physical_name, head=self.head.physical_name, head_address=self.node_address(0), shared=SHARED,
                nodes=[SlurmNode(node.name, node.address, node.slots) for node in nodes])
            slurm = {"slurm": {"dir": f"{SHARED}/{SLURM_DIR}", "munge_dir": f"{SHARED}/{MUNGE_DIR}",
                               "nodes": [node.name for node in nodes], "drain_timeout": self.drain_timeout,
                               "timeout": SLURM_TIMEOUT}}
        self.head_run = make(
            Configuration, "head", playbook=f"{PLAYBOOKS}/head.yml", hosts=[self.head],
            addresses=[self.node_address(0)], group="head", key=self.key, depends_on=self.compute,
            key_files={"cluster_key_file": self.user_key}, files=files,
            vars={"mpi_user": USER, "mpi_uid": UID, "shared": SHARED, "home": HOME, "work_dir": WORK_DIR,
                  "hostfile_path": HOSTFILE, "host_key_timeout": HOST_KEY_TIMEOUT, "nodes": everyone, **slurm},
            **({"secrets": {"munge_key_file": munge_key_name(self.address)}} if slurm else {}))
        export(self.name, self.outputs())

    def outputs(self) -> dict[str, Any]:
        """What a user of the cluster needs: where the head is, the hostfile, the work directory, and how to log in
        (``ssh -i <the user key's private key> mpi@<head>``; the key's path is known once it exists)."""
        head = self.node_address(0)
        slurm = {"scheduler": "slurm", "partition": PARTITION} if self.scheduler == "slurm" else {}
        return {"head": head, "user": USER, "hostfile": HOSTFILE, "work_dir": WORK_DIR,
                "ssh": ["ssh", "-i", Output(self.user_key, "private_key_path"), f"{USER}@{head}"], **slurm}

    def _node(self, name: str, index: int) -> Resource:
        """One node: a container whose init sets it up (files/init.sh), the shared directory mounted at /srv."""
        pooled = self._pooled()
        host = make(Container, name, memory_mib=self.memory_mib, vcpus=self.vcpus, networks=[self.network],
                    ipv4=[self.network.lease() if pooled else self.node_address(index)], init=INIT,
                    init_env={"CRANE_INIT": init_script(), "CRANE_AUTHORIZED_KEY": self.key.public_key,
                              "CRANE_NODE": name, "CRANE_MPI_USER": USER,
                              "CRANE_MPI_UID": str(UID), "CRANE_SHARED": SHARED, **self._slurm_env(index)},
                    mounts={SHARED: self.shared}, **({"template": self.template} if self.template else {}))
        if pooled and isinstance(host, Container) and host.valid:
            self.leased_addresses[index] = host.ipv4[0]
        return host

    def _slurm_env(self, index: int) -> dict[str, str]:
        """A node's Slurm part of its init (files/slurm-init.sh): its role, head or compute node; none without
        Slurm (a cluster without a scheduler keeps the environment it had)."""
        if self.scheduler != "slurm":
            return {}
        return {"CRANE_SLURM": "head" if index == 0 else "node", "CRANE_SLURM_INIT": init_script("slurm-init.sh")}

    def properties(self) -> dict[str, Any]:
        return {}
