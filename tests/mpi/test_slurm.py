"""MPICluster(scheduler="slurm") on the embedded sandbox: slurm.conf as rendered from the nodes, what the cluster
expands into with Slurm (the nodes' Slurm init, the munge key by name only, slurm.conf in the head's run), and what
a resize changes (the head's run rewrites slurm.conf; a shrink deletes the nodes after that run, which drains them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from crane_iac.engine.workspace import Workspace
from crane_iac.mpi.component import munge_key_name
from crane_iac.mpi.slurm import SlurmNode, render_slurm_conf, slurm_node_names
from crane_iac.objects import Action
from crane_iac.planner.diff import Step, order_changes
from crane_iac.planner.model import Phase
from crane_iac.projectkey import derived_key
from crane_iac.render import render_plan
from tests.engine.test_workspace import apply, project
from tests.mpi.test_component import actions

STACK = """
from crane_iac import MPICluster, Network

lan = Network("hpc-net", mode="nat", ipv4="10.91.0.0/24", dhcp=False)
MPICluster("pi", network=lan, nodes={nodes}, slots_per_node=2, scheduler="slurm")
"""
C = "mpicluster.pi"


def stack(nodes: int = 4) -> str:
    return STACK.format(nodes=nodes)


def test_slurm_conf_lists_each_compute_node_with_its_address_and_cpus_and_puts_them_all_in_main() -> None:
    conf = render_slurm_conf("Pi", head="pi-head", head_address="10.0.0.10", shared="/srv",
                             nodes=[SlurmNode("pi-node-1", "10.0.0.11", 2), SlurmNode("pi-node-2", "10.0.0.12", 4)])
    lines = conf.splitlines()
    assert "ClusterName=pi" in lines and "SlurmctldHost=pi-head(10.0.0.10)" in lines
    assert [ln for ln in lines if ln.startswith("NodeName=")] == [
        "NodeName=pi-node-1 NodeAddr=10.0.0.11 CPUs=2 State=UNKNOWN",
        "NodeName=pi-node-2 NodeAddr=10.0.0.12 CPUs=4 State=UNKNOWN"]
    assert "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP" in lines
    # what works in crane's containers: no cgroups, the controller's state and the logs on the shared disk
    assert {"ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "StateSaveLocation=/srv/.crane/slurm/state",
            "SlurmctldLogFile=/srv/.crane/slurm/log/slurmctld.log", "AuthType=auth/munge"} <= set(lines)
    assert slurm_node_names(conf) == ["pi-node-1", "pi-node-2"]


def test_a_slurm_cluster_gives_its_nodes_their_roles_and_the_head_slurm_conf_and_the_munge_key_by_name(
        tmp_path: Path) -> None:
    plan = Workspace.open(project(tmp_path, stack(nodes=2))).plan()
    after = {c.address: c.after for c in plan.changes}
    envs = {name: after[f"{C}/container.{name}"]["init_env"] for name in ("head", "node-1", "node-2")}  # type: ignore[index]
    assert {name: env["CRANE_SLURM"] for name, env in envs.items()} == {"head": "head", "node-1": "node",
                                                                         "node-2": "node"}
    assert b"slurmctld -D" in base64.b64decode(envs["head"]["CRANE_SLURM_INIT"])
    head = after[f"{C}/configuration.head"]
    assert head is not None
    assert slurm_node_names(head["files"]["slurm.conf"]) == ["pi-node-1", "pi-node-2"]
    assert "NodeName=pi-node-2 NodeAddr=10.91.0.12 CPUs=2 State=UNKNOWN" in head["files"]["slurm.conf"]
    assert head["vars"]["slurm"]["nodes"] == ["pi-node-1", "pi-node-2"]
    # the munge key reaches the run by name: crane derives it from the project's key when the run starts
    assert head["secrets"] == {"munge_key_file": munge_key_name(C)}
    apply(Workspace.open(project(tmp_path, stack(nodes=2))))
    ws = Workspace.open(tmp_path)
    assert ws.outputs()["pi"]["scheduler"] == "slurm" and ws.outputs()["pi"]["partition"] == "main"
    key = derived_key(tmp_path / ".crane", munge_key_name(C)).hex()
    recorded = json.dumps({a: [r.properties, r.outputs] for a, r in ws.state().resources.items()})
    assert key not in recorded and key not in render_plan(plan)


def test_a_cluster_without_a_scheduler_has_no_slurm(tmp_path: Path) -> None:
    plan = Workspace.open(project(tmp_path, stack().replace(', scheduler="slurm"', ""))).plan()
    head = next(c.after for c in plan.changes if c.address == f"{C}/configuration.head")
    node = next(c.after for c in plan.changes if c.address == f"{C}/container.node-1")
    assert head is not None and node is not None
    assert "slurm.conf" not in head["files"] and "slurm" not in head["vars"] and "secrets" not in head
    assert not any(k.startswith("CRANE_SLURM") for k in node["init_env"])


def test_growing_a_slurm_cluster_adds_nodes_and_rewrites_slurm_conf_in_the_heads_run_only(tmp_path: Path) -> None:
    root = project(tmp_path, stack(nodes=4))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(nodes=6))
    plan = Workspace.open(root).plan()
    assert actions(plan.changes) == {f"{C}/container.node-5": Action.CREATE, f"{C}/container.node-6": Action.CREATE,
                                     f"{C}/configuration.head": Action.UPDATE}
    shown = render_plan(plan)
    assert "+ NodeName=pi-node-5 NodeAddr=10.91.0.15 CPUs=2 State=UNKNOWN" in shown, shown
    assert "+ NodeName=pi-node-6 NodeAddr=10.91.0.16 CPUs=2 State=UNKNOWN" in shown
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes


def test_shrinking_a_slurm_cluster_deletes_the_nodes_after_the_heads_run_that_drains_them(tmp_path: Path) -> None:
    root = project(tmp_path, stack(nodes=6))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(nodes=3))
    plan = Workspace.open(root).plan()
    assert actions(plan.changes) == {**{f"{C}/container.node-{i}": Action.DELETE for i in (4, 5, 6)},
                                     f"{C}/configuration.head": Action.UPDATE}
    head = next(c.after for c in plan.changes if c.address == f"{C}/configuration.head")
    assert head is not None and head["vars"]["slurm"]["nodes"] == ["pi-node-1", "pi-node-2", "pi-node-3"]
    assert "- NodeName=pi-node-6 NodeAddr=10.91.0.16 CPUs=2 State=UNKNOWN" in render_plan(plan)
    graph = order_changes(plan.changes)
    for i in (4, 5, 6):  # the head's run (drain, wait, rewrite) before each delete
        assert Step(f"{C}/configuration.head", Phase.APPLY) in graph[Step(f"{C}/container.node-{i}", Phase.DELETE)]
