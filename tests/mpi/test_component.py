"""The MPICluster component on the embedded sandbox: what it expands into (addresses, the shared directory, the keys,
the hostfile), what a resize changes (only additions and the head's run; a shrink takes the highest nodes), the
private keys kept out of state and plans, and bad input as load errors naming the line and the cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crane_iac.engine.workspace import Workspace
from crane_iac.objects import Action
from crane_iac.planner.diff import Step, order_changes
from crane_iac.planner.model import Phase
from crane_iac.render import render_plan
from tests.conftest import ProjectDir, assert_clean_error
from tests.engine.test_workspace import apply, project

STACK = """
from crane_iac import MPICluster, Network

lan = Network("hpc-net", mode="nat", ipv4="10.91.0.0/24", dhcp=False)
MPICluster("pi", network=lan, nodes={nodes}, slots_per_node={slots})
"""
C = "mpicluster.pi"


def stack(nodes: int = 4, slots: int = 2) -> str:
    return STACK.format(nodes=nodes, slots=slots)


def actions(changes: list[object]) -> dict[str, Action]:
    return {c.address: c.action for c in changes}  # type: ignore[attr-defined]


def test_a_cluster_expands_into_a_head_compute_nodes_a_shared_directory_two_keys_and_the_heads_run(
        tmp_path: Path) -> None:
    plan = Workspace.open(project(tmp_path, stack())).plan()
    children = {"ssh_key.key", "ssh_key.user-key", "volume.shared", "container.head", "configuration.head",
                *(f"container.node-{i}" for i in (1, 2, 3, 4))}
    assert actions(plan.changes) == {"network.hpc-net": Action.CREATE,
                                     **{f"{C}/{child}": Action.CREATE for child in children}}
    by_address = {c.address: c.after for c in plan.changes}
    addresses = {name: by_address[f"{C}/container.{name}"]["nics"][0]["ipv4"]  # type: ignore[index]
                 for name in ("head", "node-1", "node-4")}
    assert addresses == {"head": "10.91.0.10", "node-1": "10.91.0.11", "node-4": "10.91.0.14"}
    for name in ("head", "node-1", "node-4"):  # every node mounts the one shared directory
        assert by_address[f"{C}/container.{name}"]["mounts"] == {"/srv": "default/pi-shared"}  # type: ignore[index]
    head = next(c for c in plan.changes if c.address == f"{C}/configuration.head")
    assert head.after is not None
    assert head.after["files"]["hostfile"] == (
        "# the compute nodes of MPI cluster pi, written by crane: mpirun --hostfile THIS\n"
        "10.91.0.11 slots=2  # pi-node-1\n10.91.0.12 slots=2  # pi-node-2\n"
        "10.91.0.13 slots=2  # pi-node-3\n10.91.0.14 slots=2  # pi-node-4\n")
    assert "btl_tcp_if_include = 10.91.0.0/24" in head.after["files"]["mca-params.conf"]
    # the user's key reaches the playbook by the key's name: the run gives it the file's path
    assert head.after["key_files"] == {"cluster_key_file": "pi-user-key"}
    assert [n["address"] for n in head.after["vars"]["nodes"]] == [f"10.91.0.{i}" for i in range(10, 15)]
    # the head's run waits for every compute node (it pins their host keys)
    assert {f"{C}/container.node-{i}" for i in (1, 2, 3, 4)} <= set(head.dependencies)
    assert "skipped" in head.note  # nothing runs on the sandbox


def test_the_cluster_exports_the_head_the_hostfile_and_the_ssh_command(tmp_path: Path) -> None:
    root = project(tmp_path, stack())
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    outputs = ws.outputs()["pi"]
    key = Path(outputs["ssh"][2])
    assert outputs == {"head": "10.91.0.10", "user": "mpi", "hostfile": "/srv/hostfile", "work_dir": "/srv/work",
                       "ssh": ["ssh", "-i", str(key), "mpi@10.91.0.10"]}
    assert key.name == "pi-user-key" and "PRIVATE KEY" in key.read_text()
    recorded = json.dumps({a: [r.properties, r.outputs] for a, r in ws.state().resources.items()})
    assert "PRIVATE KEY" not in recorded and key.read_text().splitlines()[1] not in recorded
    assert ws.state().resources[f"{C}/configuration.head"].outputs["ran"] is False
    assert not ws.plan().has_changes


def test_growing_adds_nodes_and_runs_only_the_heads_configuration_again(tmp_path: Path) -> None:
    root = project(tmp_path, stack(nodes=4))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(nodes=6))
    plan = Workspace.open(root).plan()
    assert actions(plan.changes) == {f"{C}/container.node-5": Action.CREATE, f"{C}/container.node-6": Action.CREATE,
                                     f"{C}/configuration.head": Action.UPDATE}
    shown = render_plan(plan)
    assert f'~ {C}/configuration.head  files["hostfile"]: text, +2 −0 lines' in shown, shown
    assert "+ 10.91.0.15 slots=2  # pi-node-5" in shown and "+ 10.91.0.16 slots=2  # pi-node-6" in shown
    assert "10.91.0.11 slots=2" not in shown  # the lines that stay are not shown
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes


def test_shrinking_removes_the_highest_nodes_after_the_head_has_taken_them_out_of_the_hostfile(
        tmp_path: Path) -> None:
    root = project(tmp_path, stack(nodes=6))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(nodes=4))
    plan = Workspace.open(root).plan()
    assert actions(plan.changes) == {f"{C}/container.node-5": Action.DELETE, f"{C}/container.node-6": Action.DELETE,
                                     f"{C}/configuration.head": Action.UPDATE}
    assert "- 10.91.0.16 slots=2  # pi-node-6" in render_plan(plan)
    graph = order_changes(plan.changes)
    for i in (5, 6):
        assert Step(f"{C}/configuration.head", Phase.APPLY) in graph[Step(f"{C}/container.node-{i}", Phase.DELETE)]


def test_more_slots_per_node_rewrite_the_hostfile_only(tmp_path: Path) -> None:
    root = project(tmp_path, stack(slots=2))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(slots=4))
    plan = Workspace.open(root).plan()
    assert actions(plan.changes) == {f"{C}/configuration.head": Action.UPDATE}
    assert [f.name for f in plan.changes[0].fields] == ["files"]
    assert "+ 10.91.0.11 slots=4  # pi-node-1" in render_plan(plan)


def test_on_a_pools_network_each_node_leases_its_address(tmp_path: Path) -> None:
    root = project(tmp_path, """
        from crane_iac import IPv4Pool, MPICluster, Network

        lab = IPv4Pool("lab", cidr="10.92.0.0/16", subnet_prefixlen=24)
        lan = Network("hpc-net", mode="nat", ipv4=lab.subnet(), dhcp=False)
        MPICluster("pi", network=lan, nodes=2)
    """)
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    resources = ws.state().resources
    addresses = [resources[f"{C}/container.{n}"].properties["nics"][0]["ipv4"] for n in ("head", "node-1", "node-2")]
    subnet = resources["network.hpc-net"].properties["ipv4"]
    prefix = subnet.rsplit(".", 1)[0]
    assert len(set(addresses)) == 3 and all(a.startswith(prefix + ".") for a in addresses), (subnet, addresses)
    head = resources[f"{C}/configuration.head"].properties
    assert head["files"]["hostfile"].splitlines()[1:] == [f"{a} slots=2  # pi-node-{i}"
                                                         for i, a in enumerate(addresses[1:], start=1)]
    assert ws.outputs()["pi"]["head"] == addresses[0]
    assert not ws.plan().has_changes


@pytest.mark.parametrize(("network", "body", "needle"), [
    ('ipv4="10.93.0.0/24"', "nodes=0", "mpicluster.pi: nodes: must be at least 1, got 0"),
    ('ipv4="10.93.0.0/24"', "slots_per_node=0", "mpicluster.pi: slots_per_node: must be at least 1, got 0"),
    ("", "nodes=2", "mpicluster.pi: network 'net' has no ipv4 subnet to give the nodes addresses from"),
    ('ipv4="10.93.0.0/28"', "nodes=5", "mpicluster.pi: network 'net' (10.93.0.0/28) has no room for 6 nodes"),
    ('ipv4="10.93.0.0/24"', "scheduler='pbs'", "scheduler 'pbs': crane knows scheduler=None"),
    ('ipv4="10.93.0.0/24"', "template='../x'", "mpicluster.pi: template: "),
    ('ipv4="10.93.0.0/24"', "memory_mib=16", "mpicluster.pi: memory_mib: must be at least 64, got 16"),
])
def test_bad_input_is_a_load_error_naming_the_line_and_the_cluster(
        project: ProjectDir, network: str, body: str, needle: str) -> None:
    project.write_stack(f"""
        from crane_iac import MPICluster, Network
        net = Network("net", mode="nat", {network})
        MPICluster("pi", network=net, {body})
    """)
    result = project.crane("plan")
    assert_clean_error(result, needle, "main.py:4")
    recorded = project.crane("state", "list")
    assert (recorded.code, recorded.out) == (0, ""), recorded  # the refused plan recorded nothing


def test_every_node_runs_on_the_clusters_template(tmp_path: Path) -> None:
    from crane_iac.templates.library import Library
    from tests.templates.helpers import add_template

    root = project(tmp_path, STACK.replace("slots_per_node={slots})", "slots_per_node={slots}, template='cfd')")
                   .format(nodes=2, slots=2))
    add_template(Library(root / ".crane" / "templates"), "cfd", "dir", "/")  # built on the host's own system
    plan = Workspace.open(root).plan()
    nodes = {c.address: c.after for c in plan.changes if "/container." in c.address}
    assert set(nodes) == {f"{C}/container.{n}" for n in ("head", "node-1", "node-2")}
    assert all(after is not None and after["template"] == "cfd" for after in nodes.values())
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes


def test_a_template_the_library_lacks_is_a_plan_error_naming_the_node(tmp_path: Path) -> None:
    project_dir = ProjectDir(tmp_path)
    project_dir.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    project_dir.write_stack(STACK.replace("slots_per_node={slots})", "slots_per_node={slots}, template='nope')")
                            .format(nodes=2, slots=2))
    assert_clean_error(project_dir.crane("plan"), f"{C}/container.head", "no template 'nope'")
