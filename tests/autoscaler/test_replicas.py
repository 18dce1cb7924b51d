"""`crane autoscale` as replicas on the real PostgreSQL the tests start, on the embedded sandbox driven by the
simulated source: two loops, one leads; the leader is SIGKILLed mid-period, mid-apply and between the three writes
of a scale-in (the project's failpoints, paused until the kill, so the kill lands where it is meant whatever the
machine's speed); the standby takes over within a period plus the lease, and finishes the job. Checked every time:
no decision lost or made twice (the history holds exactly one of each), no server removed but the one chosen, and
what the decision kept carries over (no second scale-out for a server still warming up, no second scale-in inside
the cooldown: a loop that forgot both would make them). A leader stopped past its lease and resumed is deposed: it
stands by and writes nothing. On SQLite, a second loop refuses to start, naming the one running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crane_iac.autoscaler.controller import BY
from crane_iac.engine.workspace import Workspace
from tests.autoscaler.test_controller import servers
from tests.engine.test_workspace import apply, project
from tests.state.postgresql_server import PostgresServer
from tests.waiting import wait_until

PERIOD, LEASE = 0.3, 2.0
SIZE = "setting:appdomain.shop/web.size"
STACK = """
from crane_iac import AppDomain, Network, ScalingPolicy, WebTier

lan = Network("shop-net", mode="isolated", ipv4="10.86.0.0/24", dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size=2, min=1, max=6),
          autoscale=ScalingPolicy(upper=0.8, lower=0.3, target=0.7, cooldown=0, stabilisation=0, warmup={warmup},
                                  scale_in_cooldown=600))
"""


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return self.text()


@dataclass
class Shop:
    root: Path
    replicas: list[Replica]

    def start(self, name: str, failpoint: str = "") -> Replica:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
        env.pop("CRANE_FAILPOINT", None)
        if failpoint:
            env |= {"CRANE_FAILPOINT": failpoint, "CRANE_FAILPOINT_PAUSE": str(self.root / f"{name}.paused")}
        log = self.root / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "crane_iac", "autoscale", "--period", str(PERIOD),
                                     "--lease", str(LEASE)], cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                    text=True, env=env)
        replica = Replica(proc, log)
        self.replicas.append(replica)
        return replica

    def paused(self, name: str, replica: Replica) -> int:
        """The pid of ``replica`` once it waits at its failpoint."""
        marker = self.root / f"{name}.paused"

        def there() -> bool:
            assert replica.proc.poll() is None, f"{name} exited: {replica.text()}"
            return marker.exists()

        wait_until(there, 60, f"{name} at its failpoint", detail=replica.text)
        return int(marker.read_text())

    def size_lines(self) -> list[tuple[object, str]]:
        """The autoscaler's writes of the tier's size: (value, why), oldest first."""
        with Workspace.open(self.root) as ws:
            return [((h.after or {}).get("value"), h.why) for h in ws.history(1000) if h.address == SIZE and h.by == BY]

    def servers(self) -> list[str]:
        with Workspace.open(self.root) as ws:
            return servers(ws)

    def apply(self, size: int | None = None) -> None:
        with Workspace.open(self.root) as ws:
            if size is not None:
                ws.set_setting("appdomain.shop/web.size", size, by="me", why=f"start at {size}")
            apply(ws)

    def converged(self) -> bool:
        with Workspace.open(self.root) as ws:
            return not ws.plan().has_changes

    def simulate(self, metrics: dict[str, float], sessions: dict[str, int] | None = None) -> None:
        (self.root / ".crane" / "simulated-metrics.json").write_text(json.dumps(metrics))
        if sessions is not None:
            (self.root / ".crane" / "simulated-sessions.json").write_text(json.dumps(sessions))


@pytest.fixture
def shop(tmp_path: Path, postgresql_server: PostgresServer) -> Iterator[Shop]:
    url = postgresql_server.create_database()
    config = f'state = "{url}"\n[stacks.main]\nfile = "stacks/main.py"\n'
    root = project(tmp_path, STACK.format(warmup=600), config)
    made = Shop(root, [])
    try:
        yield made
    finally:
        for replica in made.replicas:
            if replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait(30)
        postgresql_server.drop_database(url)


def take_over(shop: Shop, leader: Replica, pid: int, standby: Replica) -> None:
    """SIGKILL the leader (paused at its failpoint) once the standby stands by; the standby leads within a period
    plus the lease."""
    wait_until(lambda: "standing by" in standby.text(), 30, "the second replica standing by", detail=standby.text)
    assert "leading (token 1)" in leader.text(), leader.text()
    os.kill(pid, signal.SIGKILL)
    leader.proc.wait(30)
    killed = time.monotonic()
    wait_until(lambda: "leading (token 2)" in standby.text(), PERIOD + LEASE + 3, "the standby taking over",
               detail=standby.text)
    assert time.monotonic() - killed <= PERIOD + LEASE + 3


def periods(replica: Replica, count: int) -> None:
    """Wait until ``replica`` logged ``count`` periods of the tier (a decision made twice would be among them)."""
    def enough() -> bool:
        return sum(1 for line in replica.text().splitlines() if "appdomain.shop:" in line) >= count

    wait_until(enough, 60, f"{count} periods", detail=replica.text)


@pytest.mark.parametrize("failpoint", ["autoscale-decided", "after-commit"], ids=["mid-period", "mid-apply"])
def test_the_leader_killed_during_a_scale_out_the_standby_finishes_it_once(shop: Shop, failpoint: str) -> None:
    shop.apply()
    # the new server's readings are high at once (a server booting): a loop that forgot it is new would count it
    # and scale out again; the one that kept what the last one knew counts it warming up, and holds
    shop.simulate({"shop-web-1": 0.95, "shop-web-2": 0.95, "shop-web-3": 0.95})
    leader = shop.start("a", failpoint)
    pid = shop.paused("a", leader)
    standby = shop.start("b")
    take_over(shop, leader, pid, standby)
    wait_until(lambda: shop.servers() == ["shop-web-1", "shop-web-2", "shop-web-3"], 60,
               "the standby converging the tier to 3", detail=standby.text)
    periods(standby, 6)
    out = standby.stop()
    assert out.rstrip().endswith("autoscale: stopped") and "Traceback" not in out, out
    lines = shop.size_lines()
    assert [value for value, _ in lines] == [3], lines  # one scale-out, whoever made it
    assert "scale-out" in lines[0][1]
    assert "to 3 (converging)" in out or "to 3 (unconfirmed)" in out, out
    assert shop.servers() == ["shop-web-1", "shop-web-2", "shop-web-3"]
    assert shop.converged()


@pytest.mark.parametrize("failpoint", ["autoscale-chosen", "autoscale-resized", "autoscale-members"])
def test_the_leader_killed_between_the_writes_of_a_scale_in_removes_only_the_chosen_server(shop: Shop,
                                                                                            failpoint: str) -> None:
    (shop.root / "stacks" / "main.py").write_text(STACK.format(warmup=0))
    shop.apply()
    shop.apply(3)
    # web-2 has no session in flight, the others have: web-2 is the one chosen, not the newest; 0.75 of load is two
    # servers' worth (on one it would be above the early line 0.72), so the scale-in is 3 → 2
    shop.simulate({"shop-web-1": 0.25, "shop-web-2": 0.25, "shop-web-3": 0.25},
                  {"shop-web-1": 4, "shop-web-2": 0, "shop-web-3": 5})
    leader = shop.start("a", failpoint)
    pid = shop.paused("a", leader)
    standby = shop.start("b")
    take_over(shop, leader, pid, standby)
    wait_until(lambda: shop.servers() == ["shop-web-1", "shop-web-3"], 60,
               "the standby converging the tier to 2", detail=standby.text)
    periods(standby, 6)
    out = standby.stop()
    assert "Traceback" not in out, out
    lines = shop.size_lines()
    # one scale-in (the standby's own where the leader died before the size was written), which removed web-2,
    # and no second one: the scale-in cooldown the decision kept holds the tier at 2 although the load is low
    assert [value for value, _ in lines] == [2], lines
    assert "removes shop-web-2 (0 sessions" in lines[0][1], lines
    assert "(cooldown)" in out, out
    assert shop.servers() == ["shop-web-1", "shop-web-3"]
    assert shop.converged()


def test_a_leader_stopped_past_its_lease_is_deposed_and_stands_by(shop: Shop) -> None:
    """SIGSTOP stands for a leader cut off from the database: its lease lapses; when it comes back, it finds the
    lease taken and stands by, and whatever it was about to write is refused."""
    shop.apply()
    shop.simulate({"shop-web-1": 0.5, "shop-web-2": 0.5})
    first = shop.start("a")
    wait_until(lambda: "leading (token 1)" in first.text(), 30, "the first replica leading", detail=first.text)
    second = shop.start("b")
    wait_until(lambda: "standing by" in second.text(), 30, "the second standing by", detail=second.text)
    first.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: "leading (token 2)" in second.text(), PERIOD + LEASE + 3, "the standby taking over",
                   detail=second.text)
    finally:
        first.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: "standing by: " in first.text().split("leading (token 1)", 1)[1], 30,
               "the deposed leader standing by", detail=first.text)
    assert "(token 2) leads" in first.text().split("leading (token 1)", 1)[1]
    out_b, out_a = second.stop(), first.stop()
    assert "Traceback" not in out_a + out_b and shop.size_lines() == []


def test_on_sqlite_a_second_loop_refuses_to_start_naming_the_first(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(warmup=0))
    shop = Shop(root, [])
    shop.apply()
    try:
        first = shop.start("a")
        wait_until(lambda: "leading (token 1)" in first.text(), 30, "the first loop leading", detail=first.text)
        second = subprocess.run([sys.executable, "-m", "crane_iac", "autoscale"], cwd=root, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
        assert second.returncode == 1 and "Traceback" not in second.stderr, second
        assert f"pid {first.proc.pid}" in second.stderr and "runs for stack 'main' already" in second.stderr
        assert "one loop runs per stack" in second.stderr and "PostgreSQL" in second.stderr, second.stderr
        assert first.proc.poll() is None  # the first goes on
        assert first.stop().rstrip().endswith("autoscale: stopped")
        # stopped, it gave the lease up: a new loop starts (once)
        again = subprocess.run([sys.executable, "-m", "crane_iac", "autoscale", "--once"], cwd=root,
                               capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
        assert again.returncode == 0 and "leading (token 2)" in again.stdout, again
    finally:
        for replica in shop.replicas:
            if replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait(30)
