"""The AppDomain component on the embedded sandbox: what it expands into, what a change of one field changes, the
configuration runs planned and recorded as skipped (nothing runs there), and bad input as load errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import crane_iac
from crane_iac.engine.workspace import PlanOptions, Workspace
from crane_iac.errors import DiagnosticsError
from crane_iac.markdown import render_markdown
from crane_iac.objects import Action
from crane_iac.planner.diff import Step, order_changes
from crane_iac.planner.model import Phase
from crane_iac.render import render_plan
from tests.conftest import ProjectDir, assert_clean_error
from tests.engine.test_workspace import apply, project

STACK = """
from crane_iac import AppDomain, LoadBalancer, Network, WebTier

lan = Network("shop-net", mode="nat", ipv4="10.81.0.0/24", dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size={size}, min=1, max=6), lb=LoadBalancer(balance="{balance}"))
"""


def stack(size: int = 3, balance: str = "leastconn") -> str:
    return STACK.format(size=size, balance=balance)


def addresses(plan_changes: list[object]) -> dict[str, Action]:
    return {c.address: c.action for c in plan_changes}  # type: ignore[attr-defined]


def test_an_app_domain_expands_into_hosts_key_volume_and_configuration_runs(tmp_path: Path) -> None:
    plan = Workspace.open(project(tmp_path, stack())).plan()
    created = {a for a, action in addresses(plan.changes).items() if action is Action.CREATE}
    children = {"ssh_key.key", "volume.storage-data", "container.lb", "container.storage", "configuration.storage",
                "configuration.lb", *(f"{kind}.web-{i}" for kind in ("container", "configuration") for i in (1, 2, 3))}
    assert created == {"network.shop-net", *(f"appdomain.shop/{child}" for child in children)}
    by_address = {c.address: c for c in plan.changes}
    web1 = by_address["appdomain.shop/container.web-1"].after
    assert web1 is not None and web1["nics"][0]["ipv4"] == "10.81.0.12"  # lb .10, storage .11, web-i .11+i
    # nothing names where crane is installed: a plan from another checkout (CI) sees no change
    package = str(Path(crane_iac.__file__).parent)
    assert not [c.address for c in plan.changes if package in json.dumps(c.after)]
    lb = by_address["appdomain.shop/configuration.lb"]
    # the balancer's run waits for the web hosts (it lets a new server in once its health check passes)
    assert {f"appdomain.shop/container.web-{i}" for i in (1, 2, 3)} <= set(lb.dependencies)
    cfg = lb.after["files"]["haproxy.cfg"]  # type: ignore[index]
    assert "balance leastconn" in cfg and "server shop-web-3 10.81.0.14:8080" in cfg
    # the sandbox runs no guests: the plan says the runs will be skipped
    assert "appdomain.shop/configuration.lb" in render_plan(plan) and "skipped" in lb.note


def test_on_the_sandbox_the_runs_are_recorded_as_skipped_and_a_re_plan_is_a_no_op(tmp_path: Path) -> None:
    root = project(tmp_path, stack())
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    record = ws.state().resources["appdomain.shop/configuration.lb"]
    assert record.outputs["ran"] is False and "skipped" in record.outputs["skipped"]
    assert not ws.plan().has_changes
    key = next((tmp_path / ".crane").rglob("shop-key"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    state_text = "".join(str(r.properties) + str(r.outputs) for r in ws.state().resources.values())
    assert "PRIVATE KEY" not in state_text and "PRIVATE KEY" in key.read_text()


def test_growing_the_web_tier_adds_servers_and_runs_only_the_balancers_configuration_again(tmp_path: Path) -> None:
    root = project(tmp_path, stack(size=3))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(size=5))
    plan = Workspace.open(root).plan()
    assert addresses(plan.changes) == {
        "appdomain.shop/container.web-4": Action.CREATE, "appdomain.shop/container.web-5": Action.CREATE,
        "appdomain.shop/configuration.web-4": Action.CREATE, "appdomain.shop/configuration.web-5": Action.CREATE,
        "appdomain.shop/configuration.lb": Action.UPDATE}
    shown = render_plan(plan)  # the configuration file by its changed lines, not twice in full
    assert '~ appdomain.shop/configuration.lb  files["haproxy.cfg"]: text, +2 −0 lines' in shown
    assert "+     server shop-web-5 10.81.0.16:8080 check" in shown and "balance leastconn" not in shown
    apply(Workspace.open(root))

    (root / "stacks" / "main.py").write_text(stack(size=2))
    plan = Workspace.open(root).plan()
    gone = [f"appdomain.shop/{kind}.web-{i}" for kind in ("container", "configuration") for i in (3, 4, 5)]
    lb = "appdomain.shop/configuration.lb"
    assert addresses(plan.changes) == {**dict.fromkeys(gone, Action.DELETE), lb: Action.UPDATE}
    graph = order_changes(plan.changes)
    for i in (3, 4, 5):  # the balancer lets (drains) the server go before its host is deleted
        run, host = f"appdomain.shop/configuration.web-{i}", f"appdomain.shop/container.web-{i}"
        assert Step(lb, Phase.APPLY) in graph[Step(host, Phase.DELETE)]
        assert Step(run, Phase.DELETE) in graph[Step(host, Phase.DELETE)]


def test_the_balancers_server_list_shows_the_servers_added_and_removed_one_per_line(tmp_path: Path) -> None:
    root = project(tmp_path, stack(size=2))
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(size=3))
    grown = Workspace.open(root).plan()
    for shown in (render_plan(grown), render_markdown(grown)):
        servers = shown[shown.index('vars["servers"]'):].splitlines()
        assert servers[0].startswith('vars["servers"]: list, +1 −0 entries'), shown
        assert servers[1].strip() == '+ {"address": "10.81.0.14", "name": "shop-web-3", "port": 8080}', shown
        assert not [line for line in shown.splitlines() if "servers" in line and len(line) > 160], shown
    apply(Workspace.open(root))

    Workspace.open(root).set_setting("appdomain.shop/web.members", [1, 3], by="me", why="web-2 goes")
    Workspace.open(root).set_setting("appdomain.shop/web.size", 2, by="me", why="smaller")
    shrunk = render_plan(Workspace.open(root).plan())
    assert ('vars["servers"]: list, +0 −1 entries  # runs the playbook again\n'
            '      - {"address": "10.81.0.13", "name": "shop-web-2", "port": 8080}\n') in shrunk, shrunk


def test_a_changed_balancing_algorithm_touches_only_the_balancer(tmp_path: Path) -> None:
    root = project(tmp_path, stack())
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(stack(balance="roundrobin"))
    plan = Workspace.open(root).plan()
    assert addresses(plan.changes) == {"appdomain.shop/configuration.lb": Action.UPDATE}
    assert [f.note for f in plan.changes[0].fields] == ["runs the playbook again"] * len(plan.changes[0].fields)


@pytest.mark.parametrize(("body", "needle"), [
    ("web=WebTier(size=9, min=1, max=8)", "web.size 9 is outside [min 1, max 8]"),
    ("web=WebTier(size=2, min=3, max=2)", "web.min (3) is above web.max (2)"),
    ("lb=LoadBalancer(balance='fastest')", "unknown balance 'fastest'"),
    ("lb=LoadBalancer(balance='static-rr')", "cannot take web servers added at runtime"),
    ("lb=LoadBalancer(port=22)", "lb.port 22 clashes with sshd"),
    ("lb=LoadBalancer(port=8404)", "clashes with the balancer's own stats port"),
    ("web=WebTier(port=22)", "web.port 22 clashes with sshd"),
    ("web=WebTier(size=1, min=0), autoscale=ScalingPolicy()",
     "web.min 0 with autoscale: crane does not scale a tier up from zero servers"),
])
def test_bad_input_is_a_load_error_naming_the_line(project: ProjectDir, body: str, needle: str) -> None:
    project.write_stack(f"""
        from crane_iac import AppDomain, LoadBalancer, Network, ScalingPolicy, WebTier
        lan = Network("net", mode="nat", ipv4="10.82.0.0/24")
        AppDomain("shop", network=lan, {body})
    """)
    result = project.crane("plan")
    assert_clean_error(result, needle, "main.py:4")
    recorded = project.crane("state", "list")
    assert (recorded.code, recorded.out) == (0, ""), recorded  # the refused plan recorded nothing


def test_a_configuration_haproxy_rejects_fails_the_plan_naming_it(tmp_path: Path) -> None:
    body = """
from crane_iac import Configuration, Container, Network, SshKey

lan = Network("net", mode="nat", ipv4="10.83.0.0/24")
key = SshKey("key")
host = Container("lb", memory_mib=64, networks=[lan], ipv4=["10.83.0.10"], init=["/bin/true"])
Configuration("lb", playbook="crane:appdomain/lb.yml", hosts=[host], key=key,
              files={"haproxy.cfg": "frontend x\\n  bind 300.1.1.1:80\\n"},
              checks={"haproxy.cfg": ["haproxy", "-c", "-f", "{path}"]})
"""
    root = project(tmp_path, body)
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).plan()
    problem = caught.value.diagnostics[0]
    assert problem.address == "configuration.lb" and problem.line == 7
    assert "300.1.1.1" in problem.summary
    with pytest.raises(DiagnosticsError):
        apply(Workspace.open(root), PlanOptions())
    assert Workspace.open(root).state().resources == {}  # nothing applied


def test_the_ansible_inventory_is_derived_from_state_and_ansible_reads_it(project: ProjectDir) -> None:
    project.write_stack(stack(size=2))
    assert project.crane("apply", "--auto-approve").code == 0
    result = project.crane("output", "--ansible-inventory")
    assert result.code == 0, result.err
    inventory = project.root / "inventory.yml"
    inventory.write_text(result.out)
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    listed = subprocess.run([str(ansible_inventory), "-i", str(inventory), "--list"], capture_output=True, text=True,
                            timeout=120, cwd=project.root)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert sorted(data["web"]["hosts"]) == ["shop-web-1", "shop-web-2"] and data["lb"]["hosts"] == ["shop-lb"]
    web1 = data["_meta"]["hostvars"]["shop-web-1"]
    assert web1["ansible_host"] == "10.81.0.12" and web1["ansible_user"] == "root"
    assert Path(web1["ansible_ssh_private_key_file"]).name == "shop-key"


def test_the_same_domain_on_vms_plans_and_applies_on_the_sandbox(tmp_path: Path) -> None:
    """hosts="vm": VMs booted from an image, each with a cloud-init seed holding its fixed address and the key."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    body = f"""
from crane_iac import AppDomain, Network, Volume, WebTier

lan = Network("vm-net", mode="nat", ipv4="10.84.0.0/24", dhcp=False)
image = Volume("cloud-image", capacity_gib=2)
AppDomain("shop", network=lan, hosts="vm", image=image, ssh_key="{key}", web=WebTier(size=2))
"""
    root = project(tmp_path, body)
    plan = Workspace.open(root).plan()
    kinds = {c.address: c.kind for c in plan.changes}
    assert kinds["appdomain.shop/vm.web-2"] == "vm" and kinds["appdomain.shop/volume.storage-data"] == "volume"
    seed = next(c for c in plan.changes if c.address == "appdomain.shop/cloudinit.web-1-seed").after
    assert seed is not None and seed["user_data"]["ssh_authorized_keys"] == [key.with_suffix(".pub").read_text()
                                                                               .strip()]
    assert seed["network_config"]["ethernets"]["nic"]["addresses"] == ["10.84.0.12/24"]
    runs = {c.address: c.after for c in plan.changes if c.kind == "configuration"}
    assert runs["appdomain.shop/configuration.web-1"]["hosts"][0]["address"] == "10.84.0.12"  # type: ignore[index]
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes
    assert key.exists()  # the user's key: crane uses it and never deletes it


def test_a_size_set_by_a_controller_wins_is_clamped_into_the_range_and_shown_in_the_plan(tmp_path: Path) -> None:
    root = project(tmp_path, stack(size=2))
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    ws.set_setting("appdomain.shop/web.size", 4, by="autoscaler", why="memory average 0.91 above upper 0.80")
    plan = Workspace.open(root).plan()
    assert {a for a, action in addresses(plan.changes).items() if action is Action.CREATE} == {
        f"appdomain.shop/{kind}.web-{i}" for kind in ("container", "configuration") for i in (3, 4)}
    assert plan.settings == [{"key": "appdomain.shop/web.size", "value": 4, "by": "autoscaler",
                              "why": "memory average 0.91 above upper 0.80", "at": plan.settings[0]["at"]}]
    shown = render_plan(plan)
    assert "appdomain.shop/web.size = 4  # set by autoscaler at" in shown and "above upper 0.80" in shown
    assert plan.tiers == []  # the stack declares no autoscale policy: no tier is the autoscaler's to own
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes  # a human apply honours it: no change back to 2

    (root / "stacks" / "main.py").write_text(STACK.format(size=2, balance="leastconn").replace("max=6", "max=3"))
    narrowed = Workspace.open(root).plan()  # the user narrowed the range: obeyed at once, the setting clamped
    assert addresses(narrowed.changes) == {"appdomain.shop/container.web-4": Action.DELETE,
                                           "appdomain.shop/configuration.web-4": Action.DELETE,
                                           "appdomain.shop/configuration.lb": Action.UPDATE}
    Workspace.open(root).set_setting("appdomain.shop/web.size", None, by="me", why="back to the stack")
    assert {a for a, action in addresses(Workspace.open(root).plan().changes).items()
            if action is Action.DELETE} >= {"appdomain.shop/container.web-3", "appdomain.shop/container.web-4"}


def test_the_members_setting_chooses_which_servers_stay_and_new_ones_take_the_lowest_free_numbers(
        tmp_path: Path) -> None:
    root = project(tmp_path, stack(size=3))
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    ws.set_setting("appdomain.shop/web.members", [1, 3], by="autoscaler", why="removes shop-web-2: fewest sessions")
    ws.set_setting("appdomain.shop/web.size", 2, by="autoscaler", why="scale-in")
    plan = Workspace.open(root).plan()  # web-2 goes, web-3 stays at its address
    assert addresses(plan.changes) == {"appdomain.shop/container.web-2": Action.DELETE,
                                       "appdomain.shop/configuration.web-2": Action.DELETE,
                                       "appdomain.shop/configuration.lb": Action.UPDATE}
    cfg = next(c for c in plan.changes if c.address.endswith("configuration.lb")).after["files"]["haproxy.cfg"]  # type: ignore[index]
    assert "server shop-web-3 10.81.0.14:8080" in cfg and "shop-web-2" not in cfg
    apply(Workspace.open(root))
    assert not Workspace.open(root).plan().has_changes

    Workspace.open(root).set_setting("appdomain.shop/web.size", 4, by="autoscaler", why="scale-out")
    grown = Workspace.open(root).plan()  # the lowest free numbers: web-2 again, then web-4
    assert {a for a, action in addresses(grown.changes).items() if action is Action.CREATE} == {
        f"appdomain.shop/{kind}.web-{i}" for kind in ("container", "configuration") for i in (2, 4)}
    apply(Workspace.open(root))
    # back to 3 by size alone: the newest goes (web-4, the last joined), not the highest-numbered oldest
    Workspace.open(root).set_setting("appdomain.shop/web.size", 3, by="me", why="one fewer")
    assert {a for a, action in addresses(Workspace.open(root).plan().changes).items()
            if action is Action.DELETE} == {"appdomain.shop/container.web-4", "appdomain.shop/configuration.web-4"}


def test_a_members_setting_that_is_not_a_list_of_numbers_is_a_load_error_naming_it(tmp_path: Path) -> None:
    root = project(tmp_path, stack(size=2))
    Workspace.open(root).set_setting("appdomain.shop/web.members", "web-1", by="me", why="typo")
    with pytest.raises(DiagnosticsError) as caught:
        Workspace.open(root).plan()
    assert "appdomain.shop: setting appdomain.shop/web.members = 'web-1' is not a list of web server numbers" \
        in str(caught.value)


def test_members_listed_in_another_order_change_nothing(tmp_path: Path) -> None:
    """The members setting written before the size (a loop killed between the two): the same servers, so no change,
    not even the balancer's run (its servers are listed by number, whatever their age)."""
    root = project(tmp_path, stack(size=3))
    apply(Workspace.open(root))
    Workspace.open(root).set_setting("appdomain.shop/web.members", [1, 3], by="autoscaler", why="removes shop-web-2")
    assert not Workspace.open(root).plan().has_changes


def test_members_written_with_the_chosen_server_last_change_nothing_until_the_size_drops(tmp_path: Path) -> None:
    """The autoscaler's three writes for a scale-in that removes web-2 of [1, 2, 3]: members [1, 3, 2] (the same
    servers: no change, whoever applies next), the size 2 (web-2 goes, not web-3), members [1, 3] (no change)."""
    root = project(tmp_path, stack(size=3))
    apply(Workspace.open(root))
    Workspace.open(root).set_setting("appdomain.shop/web.members", [1, 3, 2], by="autoscaler", why="removes web-2")
    assert not Workspace.open(root).plan().has_changes
    Workspace.open(root).set_setting("appdomain.shop/web.size", 2, by="autoscaler", why="scale-in")
    assert {a for a, action in addresses(Workspace.open(root).plan().changes).items()
            if action is Action.DELETE} == {"appdomain.shop/container.web-2", "appdomain.shop/configuration.web-2"}
    apply(Workspace.open(root))
    Workspace.open(root).set_setting("appdomain.shop/web.members", [1, 3], by="autoscaler", why="removes web-2")
    assert not Workspace.open(root).plan().has_changes


POOLED = """
from crane_iac import AppDomain, IPv4Pool, Network, WebTier

office = IPv4Pool("office", cidr="10.90.0.0/16", subnet_prefixlen=24)
lan = Network("shop-net", mode="nat", ipv4=office.subnet(), dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size={size}, min=1, max=6))
"""


def test_on_a_pools_network_the_hosts_lease_their_addresses(tmp_path: Path) -> None:
    """The network's subnet comes from a pool: the hosts take leased addresses instead of fixed offsets, the
    balancer's servers name those, and a server added later leases the next one while the
    others keep theirs."""
    root = project(tmp_path, POOLED.format(size=2))
    apply(Workspace.open(root))
    ws = Workspace.open(root)
    nics = {a.rpartition(".")[2]: r.properties["nics"][0]["ipv4"] for a, r in ws.state().resources.items()
            if r.kind == "container"}
    # lb, storage, web-1, web-2 in the order the domain builds them, from the network's own pool (.1 is the host's)
    assert nics == {"lb": "10.90.0.2", "storage": "10.90.0.3", "web-1": "10.90.0.4", "web-2": "10.90.0.5"}
    cfg = ws.state().resources["appdomain.shop/configuration.lb"].properties["files"]["haproxy.cfg"]
    assert "server shop-web-1 10.90.0.4:8080" in cfg and "server shop-web-2 10.90.0.5:8080" in cfg
    root.joinpath("stacks", "main.py").write_text(POOLED.format(size=3))
    plan = Workspace.open(root).plan()
    web3 = next(c for c in plan.changes if c.address == "appdomain.shop/container.web-3")
    assert web3.after is not None and web3.after["nics"][0]["ipv4"] == "10.90.0.6"
    assert {c.address for c in plan.changes if c.action is not Action.CREATE} == {"appdomain.shop/configuration.lb"}
