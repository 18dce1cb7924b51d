"""slurm.conf for an MPI cluster's Slurm, rendered from its nodes (pure: no I/O).

The head runs slurmctld and no jobs; each compute node runs slurmd and is a Slurm node named as its container (its
hostname), at its address, with ``CPUs = slots_per_node``: Slurm gives a node as many tasks as the hostfile gives it
slots. One partition, ``main``, holds every compute node and is the default.

The settings are the ones that work in crane's containers (docs/decisions/mpi-clusters.md says why each):
no cgroups (``proctrack/linuxproc``, ``task/none``: a container's cgroup tree is libvirt's, not the node's to
split), no accounting database, ``SlurmdParameters=config_overrides`` (a container sees the host's CPUs, whatever
``vcpus`` says: the configured count is the truth), the controller's state and every daemon's log on the shared
disk (they outlive a restart of a container, and the host can read them), ``TreeWidth`` above any cluster's size
(slurmctld and srun talk to every slurmd directly: a slurmd that has not re-read slurm.conf since a node was added
is never asked to forward a message to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: the one partition, every compute node in it, the default
PARTITION = "main"
#: where the cluster's Slurm keeps its files on the shared disk (the nodes mount it at /srv): ``etc`` is
#: bind-mounted over the nodes' /etc/slurm, ``state`` is slurmctld's StateSaveLocation, ``log`` has every daemon's
#: log; the munge key is in ``munge`` (its directory the munge user's, 0700)
SLURM_DIR = ".crane/slurm"
MUNGE_DIR = ".crane/munge"


@dataclass(frozen=True)
class SlurmNode:
    """A compute node as Slurm knows it: its container's name (the node's hostname), its address, its CPUs."""

    name: str
    address: str
    cpus: int


def render_slurm_conf(cluster: str, *, head: str, head_address: str, nodes: Sequence[SlurmNode],
                      shared: str) -> str:
    """The cluster's slurm.conf: the controller on the head, one ``NodeName`` line per compute node in node order,
    and the partition ``main`` of all of them."""
    slurm = f"{shared}/{SLURM_DIR}"
    lines = [
        f"# slurm.conf of MPI cluster {cluster}, written by crane: every node reads it at /etc/slurm/slurm.conf",
        f"ClusterName={_cluster_name(cluster)}",
        f"SlurmctldHost={head}({head_address})",
        "SlurmUser=slurm",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SwitchType=switch/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "TreeWidth=65533",
        # a finished job stays in the controller's memory for an hour: crane reads its exit code there
        "MinJobAge=3600",
        f"StateSaveLocation={slurm}/state",
        "SlurmdSpoolDir=/run/slurmd",
        "SlurmctldPidFile=/run/slurmctld.pid",
        "SlurmdPidFile=/run/slurmd.pid",
        f"SlurmctldLogFile={slurm}/log/slurmctld.log",
        f"SlurmdLogFile={slurm}/log/slurmd-%n.log",
        "",
        "# the compute nodes: one line each (crane rewrites them when the cluster is resized)",
    ]
    lines += [f"NodeName={node.name} NodeAddr={node.address} CPUs={node.cpus} State=UNKNOWN" for node in nodes]
    lines += ["", f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]
    return "\n".join(lines)


def _cluster_name(cluster: str) -> str:
    """Slurm's ClusterName: lower case, at most 40 characters (Slurm lowercases it and warns on longer names)."""
    return cluster.lower()[:40]


def slurm_node_names(conf: str) -> list[str]:
    """The ``NodeName`` of each node line of a slurm.conf crane rendered, in order."""
    return [line.split()[0].removeprefix("NodeName=") for line in conf.splitlines() if line.startswith("NodeName=")]
