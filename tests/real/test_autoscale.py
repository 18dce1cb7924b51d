"""The autoscaler for real: an app domain in LXC containers on lxc:///system, `crane autoscale` reading each web
server's memory from its cgroup, and the servers' memory driven up and down through the app (/memory?hold=MB):
the tier scales out when the average crosses `upper` and back in when it falls, through real HAProxy and the real
state store, with no failed request; SIGKILLing the loop after it wrote a decision and starting it again converges
with no orphan and no lost decision. The history keeps both decisions with their reasons. With source="agent", the
same through crane's agent in each web server: pulled, and pushing to the loop's receiver on the network's host
address."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ProjectDir, free_port
from tests.real.host import LXC_URI, LxcHost
from tests.real.test_appdomain import Load
from tests.state.postgresql_server import PostgresServer
from tests.waiting import wait_until

PREFIX = "cas-"
NET = "10.236.0"
LB = f"{NET}.10"
STACK = f'''
from crane_iac import AppDomain, Network, ScalingPolicy, Storage, StoragePool, WebTier

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="/var/lib/{PREFIX}pool")
AppDomain("{PREFIX}shop", network=net, web=WebTier(size=2, min=2, max=4, memory_mib=256), storage=Storage(pool=pool),
          autoscale=ScalingPolicy(upper=0.6, lower=0.35, target=0.59, cooldown=4, stabilisation=4, warmup=4,
                                  stale_after=30, source="provider"))
'''  # target 0.59: two servers at ~0.79 scale out by one (ceil(2 × 0.79 / 0.59) = 3), as the test expects


def web_address(i: int) -> str:
    return f"{NET}.{11 + i}:8080"


def hold(i: int, mib: int) -> None:
    with urllib.request.urlopen(f"http://{web_address(i)}/memory?hold={mib}", timeout=20) as response:
        assert response.status == 200


def web_numbers(project: ProjectDir) -> list[int]:
    """The tier's web servers by number, from state: web-i sits at NET.(11 + i), and after a scale-in that removed
    an older server they need not be 1 … size (the first test may leave web-1 and web-3)."""
    listed = project.crane("state", "list")
    assert listed.code == 0, listed.err
    return sorted(int(found[1]) for line in listed.out.splitlines()
                  if (found := re.search(r"/container\.web-(\d+)$", line.strip())))


def servers(project: ProjectDir) -> int:
    return len(web_numbers(project))


def stats() -> str:
    try:
        with urllib.request.urlopen(f"http://{LB}:8404/stats;csv", timeout=5) as response:
            return "\n".join(",".join(line.split(",")[:2] + line.split(",")[17:18])
                             for line in response.read().decode().splitlines())
    except OSError as exc:
        return f"(stats: {exc})"


def wait_for(what: str, test: Callable[[], object], timeout: float, loop: subprocess.Popen[str],
             load: Load | None = None) -> None:
    """Wait until ``test()`` holds, failing at once if the autoscaler exits meanwhile."""
    def holds() -> bool:
        if test():
            return True
        assert loop.poll() is None, f"the autoscaler exited ({loop.returncode}) waiting for {what}"
        return False

    def seen() -> str:
        seen_load = f"load: {dict(load.ok)}, {len(load.failed)} failed {load.failed[-2:]}; " if load else ""
        return f"{seen_load}HAProxy's servers:\n{stats()}"

    # every half second: a test may run a crane command (`crane state list`) each time
    wait_until(holds, timeout, what, every=0.5, detail=seen)


def start_loop(project: ProjectDir, *args: str) -> subprocess.Popen[str]:
    with (project.root / "autoscale.log").open("a") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "crane_iac", "autoscale", "--period", "1", *args],
                                cwd=project.root,
                                stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


@contextmanager
def applied_domain(lxc_host: LxcHost, project: ProjectDir, prefix: str, stack: str) -> Iterator[ProjectDir]:
    """``stack`` applied on lxc:///system in ``project``; destroyed, and anything named ``prefix`` swept, after."""
    lxc_host.sweep(prefix)
    project.write_config(f"""
        [stacks.shop]
        file = "stacks/shop.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5
    """)
    project.write_stack(stack, "shop.py")
    try:
        applied = project.crane("apply", "--auto-approve")
        assert applied.code == 0, applied.out + applied.err
        yield project
    finally:
        project.crane("destroy", "--auto-approve")
        lxc_host.sweep(prefix)


@pytest.fixture(scope="module")
def shop(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    with applied_domain(lxc_host, ProjectDir(tmp_path_factory.mktemp("autoscale")), PREFIX, STACK) as project:
        yield project


def test_memory_up_scales_out_and_down_scales_in_with_no_failed_request(shop: ProjectDir) -> None:
    loop = start_loop(shop)
    try:
        with Load(url=f"http://{LB}/") as load:
            for i in (1, 2):
                hold(i, 150)  # ~0.2 of 256 MiB in use, plus 150 MiB: above upper 0.6
            wait_for("scale-out to 3", lambda: servers(shop) >= 3, 90, loop)
            # SIGKILL the loop now and again: what it decided is in state, and a new loop carries on
            loop.send_signal(signal.SIGKILL)
            loop.wait(30)
            loop = start_loop(shop)
            wait_for("web-3 in the pool", lambda: "cas-shop-web-3" in load.ok, 60, loop, load)
            for i in (1, 2):
                hold(i, 0)
            wait_for("scale-in to 2", lambda: servers(shop) == 2, 120, loop)
            # the scale-in's apply has ended (the loop logs its period's decision with "applied" after it), and
            # the load goes on through the tier it left, so that a request the removed server dropped would show
            wait_for("the end of the scale-in's apply", lambda: re.search(
                r": (in|hold) to 2 \(.*; applied$", (shop.root / "autoscale.log").read_text(), re.MULTILINE), 60, loop)
            load.run_through(30, "after the scale-in")
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(60)
    log = (shop.root / "autoscale.log").read_text()
    print(log[-3000:])
    print(f"load: {sum(load.ok.values())} requests, {len(load.failed)} failed, by host {dict(load.ok)}")
    assert load.failed == [], load.failed[:5]
    status = shop.crane("autoscale", "--status")
    assert status.code == 0
    decisions = [line for line in status.out.splitlines() if "web.size" in line]
    # the scale-in chose its server from the real balancer's sessions in flight (the newest among equals), and that
    # server is the one that went, whichever it was (web-3, the newest, or an idle older one: the members setting)
    (scale_in,) = [line for line in decisions if "= 2" in line and "scale-in" in line]
    assert "fewest sessions, newest first" in scale_in, status.out
    removed = re.search(r"removes (\S+) \(", scale_in)
    assert removed is not None, scale_in
    left = shop.crane("state", "list").out
    assert f"container.{removed[1].removeprefix(PREFIX + 'shop-')}" not in left and left.count("container.web-") == 2
    assert any("= 3" in line and "scale-out" in line and "memory average" in line for line in decisions), status.out
    plan = shop.crane("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err  # converged: nothing left to do, no orphan
    with urllib.request.urlopen(f"http://{LB}/", timeout=5) as response:
        assert response.status == 200


@pytest.fixture
def on_postgresql(shop: ProjectDir, postgresql_server: PostgresServer) -> Iterator[ProjectDir]:
    """The shop with its state moved to a database of the session's PostgreSQL (`crane state migrate`), and moved
    back to its SQLite file after, so the module's domain is destroyed as it was made."""
    url = postgresql_server.create_database()
    config = shop.root / "crane.toml"
    before = config.read_text()
    moved = shop.crane("state", "migrate", "--to", url)
    assert moved.code == 0, moved.out + moved.err
    config.write_text(f'state = "{url}"\n{before}')
    try:
        yield shop
    finally:
        for suffix in ("", "-wal", "-shm"):
            (shop.root / ".crane" / f"state.db{suffix}").unlink(missing_ok=True)
        back = shop.crane("state", "migrate", "--to", f"sqlite:///{shop.root}/.crane/state.db")
        config.write_text(before)
        postgresql_server.drop_database(url)
        assert back.code == 0, back.out + back.err


def size_decisions(project: ProjectDir) -> list[tuple[int, str]]:
    """The autoscaler's writes of the tier's size (`crane autoscale --status`): (serial, line), oldest first."""
    status = project.crane("autoscale", "--status")
    assert status.code == 0, status.err
    return [(int(found[1]), line) for line in status.out.splitlines()
            if "web.size" in line and (found := re.search(r"serial (\d+)", line))]


def start_replica(project: ProjectDir, name: str, failpoint: str = "") -> subprocess.Popen[str]:
    """One replica of `crane autoscale` (a period a second, a lease of 3 s), logging to ``name``.log; with
    ``failpoint``, it waits there to be killed (its pid in ``name``.paused)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CRANE_FAILPOINT", None)
    if failpoint:
        env |= {"CRANE_FAILPOINT": failpoint, "CRANE_FAILPOINT_PAUSE": str(project.root / f"{name}.paused")}
    with (project.root / f"{name}.log").open("w") as log:
        return subprocess.Popen([sys.executable, "-m", "crane_iac", "autoscale", "--period", "1", "--lease", "3"],
                                cwd=project.root, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def test_two_replicas_on_postgresql_the_standby_finishes_the_scale_out_its_leader_died_in(
        on_postgresql: ProjectDir) -> None:
    """The leader is SIGKILLed in the middle of the scale-out's apply (its first batch recorded); the standby takes
    the lease, converges the tier to 3 and later back to 2, with no failed request, and the history has one decision
    for each action, with its reason."""
    shop = on_postgresql
    assert servers(shop) == 2
    earlier = max((serial for serial, _ in size_decisions(shop)), default=0)
    log_a, log_b = (lambda: (shop.root / "a.log").read_text()), (lambda: (shop.root / "b.log").read_text())
    leader = start_replica(shop, "a", "after-commit")
    standby = None
    try:
        wait_for("the first replica leading", lambda: "leading (token" in log_a(), 60, leader)
        standby = start_replica(shop, "b")
        members = web_numbers(shop)
        newcomer = min(set(range(1, 5)) - set(members))  # the scale-out adds the lowest free number
        with Load(url=f"http://{LB}/") as load:
            wait_for("the second replica standing by", lambda: "standing by" in log_b(), 60, standby)
            for i in members:
                hold(i, 150)
            paused = shop.root / "a.paused"
            wait_for("the leader in the scale-out's apply", paused.exists, 90, leader)
            os.kill(int(paused.read_text()), signal.SIGKILL)
            leader.wait(30)
            wait_for("the standby leading", lambda: re.search(r"leading \(token \d+\)", log_b()), 1 + 3 + 10, standby)
            wait_for(f"web-{newcomer} in the pool", lambda: f"cas-shop-web-{newcomer}" in load.ok, 120, standby, load)
            for i in members:
                hold(i, 0)
            wait_for("scale-in to 2", lambda: servers(shop) == 2, 120, standby)
            wait_for("the end of the scale-in's apply", lambda: re.search(
                r": (in|hold) to 2 \(.*; applied$", log_b(), re.MULTILINE), 60, standby)
            load.run_through(10, "after the scale-in")
    finally:
        for replica in (leader, standby):
            if replica is not None and replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
                replica.wait(60)
        print(log_a()[-2000:], log_b()[-3000:] if standby is not None else "", sep="\n")
    assert load.failed == [], load.failed[:5]
    assert "Traceback" not in log_a() + log_b()
    decisions = [line for serial, line in size_decisions(shop) if serial > earlier]
    assert len(decisions) == 2, decisions  # one scale-out, one scale-in: none lost, none made twice
    assert "= 3" in decisions[0] and "= 2" in decisions[1], decisions
    assert "= 3" not in decisions[1] and "scale-out" in decisions[0] and "memory average" in decisions[0]
    assert "scale-in" in decisions[1], decisions
    plan = shop.crane("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err


AGENT_PREFIX = "caa-"
AGENT_NET = "10.237.0"
AGENT_STACK = STACK.replace(PREFIX, AGENT_PREFIX).replace(NET, AGENT_NET).replace(
    ', source="provider")', ")")  # the default: the agents
assert "source=" not in AGENT_STACK


@pytest.fixture(scope="module")
def agent_shop(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    project = ProjectDir(tmp_path_factory.mktemp("autoscale-agent"))
    with applied_domain(lxc_host, project, AGENT_PREFIX, AGENT_STACK) as applied:
        yield applied


def agent_get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        data: dict[str, Any] = json.loads(response.read())
        return data


def agent_log(i: int) -> str:
    """What web-i's agent printed (its runit log in the container, read through the process's root)."""
    found = subprocess.run(["pgrep", "-f", f"agent.py --bind {AGENT_NET}.{11 + i} "], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            return Path(f"/proc/{pid}/root/var/log/crane/agent.log").read_text()[-2000:]
        except OSError as exc:
            return f"(agent {pid}'s log: {exc})"
    return "(no agent process)"


#: run in a container of the domain (virsh lxc-enter-namespace: its network namespace, so from its address): pushes
#: to the loop's receiver samples of both web servers, at 0.99 and dated an hour ahead (believed, they would stay the
#: newest and scale the tier out), MACed with a key that is not the domain's; prints each answer's status
FORGE = """
import http.client, json, time
for host in ("caa-shop-web-1", "caa-shop-web-2"):
    body = json.dumps({{"host": host, "memory": 0.99, "cpu": 0.99, "at": time.time() + 3600, "seq": 10**9}}).encode()
    conn = http.client.HTTPConnection("{receiver}", 9465, timeout=5)
    conn.request("POST", "/push", body=body, headers={{"X-Crane-Mac": "ab" * 32}})
    print(conn.getresponse().status)
"""


def forge_from(container: str) -> list[int]:
    done = subprocess.run(["virsh", "-c", LXC_URI, "lxc-enter-namespace", container, "--noseclabel",
                           "/usr/bin/python3", "-c", FORGE.format(receiver=f"{AGENT_NET}.1")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return [int(line) for line in done.stdout.split()]


def test_forged_pushes_from_a_host_outside_the_tier_and_with_a_bad_mac_are_refused_and_move_nothing(
        agent_shop: ProjectDir) -> None:
    """Before the scale-out test (the tier at 2, its memory low): the storage server (of the domain, not of its
    tier) and web-1 itself (with a bad MAC) push forged samples that would scale the tier out: refused, counted by
    reason, and the loop's next periods hold the tier at 2."""
    port = free_port()
    loop = start_loop(agent_shop, "--metrics-port", str(port))
    log = agent_shop.root / "autoscale.log"
    try:
        wait_for("the loop's receiver", lambda: "receiving the agents' pushes" in log.read_text(), 30, loop)
        assert forge_from(f"{AGENT_PREFIX}shop-storage") == [403, 403]
        assert forge_from(f"{AGENT_PREFIX}shop-web-1") == [403, 403]

        def counted() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                page = response.read().decode()
            return page if "reason=\"bad-mac\"" in page else ""

        page = wait_until(counted, 30, "the refusals in the loop's metrics")
        domain = f"appdomain.{AGENT_PREFIX}shop"
        for reason in ("not-in-tier", "bad-mac"):
            assert f'crane_autoscale_refused_samples_total{{domain="{domain}",reason="{reason}"}} 2.0' in page, page
        # three whole periods after the forgeries: each holds at 2 (forged samples believed would scale out)
        periods = len(re.findall(r" to \d+ \(", log.read_text()))
        wait_for("three more periods", lambda: len(re.findall(r" to \d+ \(", log.read_text())) >= periods + 3, 30,
                 loop)
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(60)
    text = log.read_text()
    assert ": out to" not in text and servers(agent_shop) == 2, text[-3000:]


def test_the_agents_are_pulled_push_to_the_loop_and_scale_the_tier_out(agent_shop: ProjectDir) -> None:
    def sample(i: int) -> dict[str, Any]:
        return agent_get(f"http://{AGENT_NET}.{11 + i}:9465/sample")

    first = sample(1)
    assert first["host"] == f"{AGENT_PREFIX}shop-web-1" and first["cpu"] is not None, first
    assert 0 < first["memory"] < 0.5, first  # the container's cgroup (256 MiB), not the host's memory
    loop = start_loop(agent_shop)
    try:
        for i in (1, 2):
            agent_get(f"http://{AGENT_NET}.{11 + i}:8080/memory?hold=150")
        wait_for("the agent's memory above upper", lambda: sample(1)["memory"] > 0.6, 30, loop)
        wait_for("scale-out to 3", lambda: servers(agent_shop) >= 3, 90, loop)
        # the container reaches the loop's receiver on the bridge (the tier may have grown on the first period's
        # pulls alone, before the agent's retried push got there: the loop's receiver starts with that period)
        wait_until(lambda: sample(1)["pushed"] >= 1, 15, "a push from web-1's agent received by the loop",
                   every=0.5, detail=lambda: f"{sample(1)['pushed']} pushes; the agent:\n{agent_log(1)}\n"
                                             f"the loop:\n{(agent_shop.root / 'autoscale.log').read_text()}")
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(60)
    log = (agent_shop.root / "autoscale.log").read_text()
    print(log[-3000:])
    assert f"receiving the agents' pushes on {AGENT_NET}.1:9465" in log and "cannot receive" not in log, log
    status = agent_shop.crane("autoscale", "--status")
    assert any("= 3" in line and "scale-out" in line and "memory average" in line for line in status.out.splitlines())
