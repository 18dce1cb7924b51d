"""crane's agent (files/agent.py) as a real process of the system Python on this host (its own cgroup and /proc are
real), against the autoscaler's real receiver (AgentMetrics) on 127.0.0.1: pulls, pushes on a move and on the
heartbeat, MACed with the domain's key and believed only from the tier's hosts (forged, replayed and junk samples
refused and counted: tests/autoscaler/test_agent_trust.py has the receiver's rules one by one), a receiver that is
down survived, SIGTERM and bad arguments. The reading itself is also
checked in-process against cgroup files the test lays out as a v1 and a v2 container sees them (this host cannot
put the agent in a memory-limited cgroup of its own)."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crane_iac.autoscaler.agents import MAX_BODY, AgentMetrics, mac
from crane_iac.scaling import ScalableTier, TierHost
from tests.appdomain.processes import FILES, SYSTEM_PYTHON, free_port
from tests.waiting import wait_until

AGENT = FILES / "agent.py"
#: the domain's key the test's agents are given, and the tier they are admitted to the receiver under
KEY = bytes(range(32))
DOMAIN = "appdomain.shop"


def load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crane_agent", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AgentProcess:
    """files/agent.py on 127.0.0.1:port (serving GET /sample), run by the system Python; its stderr in a file."""

    def __init__(self, log_dir: Path, name: str, *args: str, bind: str = "127.0.0.1", key: bytes | None = KEY) -> None:
        self.name = name
        self.bind = bind
        self.port = free_port()
        self.log = log_dir / f"agent-{name}.log"
        keyed: list[str] = []
        if key is not None:
            key_file = log_dir / f"agent-{name}.key"
            key_file.write_text(key.hex())
            keyed = ["--key-file", str(key_file)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(AGENT), "--bind", bind, "--port", str(self.port),
                                          "--name", name, *keyed, *args], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def sample(self) -> dict[str, Any] | None:
        """GET /sample, or None while it does not answer one."""
        conn = http.client.HTTPConnection(self.bind, self.port, timeout=5)
        try:
            conn.request("GET", "/sample")
            response = conn.getresponse()
            return json.loads(response.read()) if response.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def wait_sample(self, test: Callable[[dict[str, Any]], bool] = lambda _: True,
                    timeout: float = 15) -> dict[str, Any]:
        def wanted() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"the agent exited ({self.proc.returncode}): {self.log.read_text()}"
            sample = self.sample()
            return sample if sample is not None and test(sample) else None

        found = wait_until(wanted, timeout, f"a sample from agent {self.name}",
                           detail=lambda: f"{self.sample()}; {self.log.read_text()}")
        assert found is not None
        return found

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """``start(name, *args, bind=, key=)``: a running agent (with the domain's key unless told otherwise); every one is
    sent SIGTERM at the end and must have exited 0."""
    started: list[AgentProcess] = []

    def start(name: str, *args: str, **options: Any) -> AgentProcess:
        started.append(AgentProcess(tmp_path, name, *args, **options))
        return started[-1]

    yield start
    codes = {a.name: a.terminate() for a in started}
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
def receiver() -> Iterator[tuple[AgentMetrics, int]]:
    """The autoscaler's receiver on 127.0.0.1:<free port>, stopped at the end."""
    metrics = AgentMetrics()
    port = free_port()
    assert metrics.listen("127.0.0.1", port)
    try:
        yield metrics, port
    finally:
        metrics.close()


def tier(*hosts: tuple[str, str], port: int | None, signal: str = "memory", pull_after: float = 10.0) -> ScalableTier:
    return ScalableTier(DOMAIN, f"{DOMAIN}/web.size", len(hosts), len(hosts), 1, 8,
                        tuple(TierHost(f"{DOMAIN}/container.{n}", "container", n, ip=ip) for n, ip in hosts),
                        {"signal": signal, "pull_after": pull_after}, agent_port=port)


def admitted(metrics: AgentMetrics, *hosts: tuple[str, str], port: int | None, **policy: Any) -> ScalableTier:
    """The tier of ``hosts``, admitted to ``metrics`` with the domain's key."""
    scalable = tier(*hosts, port=port, **policy)
    metrics.admit(scalable, KEY)
    return scalable


def post(port: int, body: bytes, path: str = "/push", method: str = "POST", *, source: str = "127.0.0.1",
         signature: str | None = None) -> tuple[int, str]:
    """A request to the receiver from ``source``, with ``signature`` as its MAC header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        headers = {"Content-Type": "application/json", **({"X-Crane-Mac": signature} if signature else {})}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_a_pull_returns_a_fresh_sample_of_memory_or_cpu(agents: Callable[..., AgentProcess]) -> None:
    agent = agents("web-a", "--interval", "0.2")
    first = agent.wait_sample()
    assert first["host"] == "web-a" and first["seq"] >= 1 and first["pushed"] == 0
    assert 0 < first["memory"] < 1 and 0 <= first["cpu"] <= 1.05  # the first sample already has CPU
    metrics = AgentMetrics()
    before = time.time()
    memory = metrics.read(admitted(metrics, ("web-a", "127.0.0.1"), port=agent.port), before)
    cpu = metrics.read(tier(("web-a", "127.0.0.1"), port=agent.port, signal="cpu", pull_after=0.01), time.time())
    assert [s.host for s in memory] == ["web-a"] and 0 < memory[0].value < 1
    assert before - 0.5 <= memory[0].at <= time.time()  # taken within the last interval, on this host's clock
    assert [s.host for s in cpu] == ["web-a"] and 0 <= cpu[0].value <= 1.05 and cpu[0].at >= memory[0].at
    assert metrics.pushes == {}  # pulled, not pushed
    # an agent that answers with another host's name (refused), and an address where no agent answers: missing
    assert metrics.read(admitted(metrics, ("web-b", "127.0.0.1"), ("web-c", "127.0.0.2"), port=agent.port),
                        time.time()) == []
    assert metrics.refused == {(DOMAIN, "not-in-tier"): 1}


def test_step_zero_pushes_every_move_and_a_large_step_only_the_first_sample(
        agents: Callable[..., AgentProcess], receiver: tuple[AgentMetrics, int]) -> None:
    metrics, port = receiver
    push = f"http://127.0.0.1:{port}/push"
    both = admitted(metrics, ("eager", "127.0.0.2"), ("calm", "127.0.0.3"), port=1)
    agents("eager", "--interval", "0.1", "--step", "0", "--heartbeat", "1000", "--push", push, bind="127.0.0.2")
    calm = agents("calm", "--interval", "0.1", "--step", "2", "--heartbeat", "1000", "--push", push, bind="127.0.0.3")
    wait_until(lambda: metrics.pushes.get("eager", 0) >= 8, 15, "eight pushes of the eager agent")
    sample = calm.wait_sample(lambda s: s["seq"] >= 15)
    assert metrics.pushes.get("calm") == 1 and sample["pushed"] == 1, (metrics.pushes, sample)
    # the newest pushed sample is read without a pull (no agent listens on port 1)
    pushed = metrics.read(both, time.time())
    assert sorted(s.host for s in pushed) == ["calm", "eager"]
    newest = metrics.newest("calm", "127.0.0.3")
    assert newest is not None and newest.seq == 1  # the first sample, the only one pushed
    assert metrics.refused == {}


def test_the_heartbeat_pushes_a_sample_that_did_not_move(
        agents: Callable[..., AgentProcess], receiver: tuple[AgentMetrics, int]) -> None:
    metrics, port = receiver
    admitted(metrics, ("beat", "127.0.0.1"), port=1)
    agent = agents("beat", "--interval", "0.1", "--step", "2", "--heartbeat", "0.3",
                   "--push", f"http://127.0.0.1:{port}/push")
    wait_until(lambda: metrics.pushes.get("beat", 0) >= 4, 15, "four heartbeats")
    sample = agent.wait_sample()
    assert metrics.pushes["beat"] * 2 <= sample["seq"], (metrics.pushes, sample)  # not every sample is pushed


def test_junk_pushes_are_refused_and_a_push_counts_only_from_its_hosts_address(
        receiver: tuple[AgentMetrics, int]) -> None:
    metrics, port = receiver
    web_a = admitted(metrics, ("web-a", "127.0.0.1"), port=1)
    now = time.time()
    good = {"host": "web-a", "memory": 0.5, "cpu": None, "at": now, "seq": 3}

    def signed(body: bytes, **options: Any) -> tuple[int, str]:
        return post(port, body, signature=mac(KEY, "push", body), **options)

    refused = [b"not json", b"[1, 2]", json.dumps({**good, "host": ""}).encode(),
               json.dumps({**good, "memory": "high"}).encode(), json.dumps({**good, "memory": -0.1}).encode(),
               json.dumps({**good, "cpu": True}).encode(), b'{"host": "web-a", "memory": NaN, "at": 1, "seq": 1}',
               json.dumps({**good, "at": None}).encode(), json.dumps({**good, "seq": -1}).encode()]
    for body in refused:
        status, text = signed(body)
        assert status == 400 and text.startswith("malformed: not a sample: "), (body, status, text)
    assert signed(b"{" + b" " * MAX_BODY + b"}")[0] == 413
    assert signed(json.dumps(good).encode(), path="/elsewhere")[0] == 404
    assert post(port, b"", method="GET")[0] == 405
    assert metrics.pushes == {} and metrics.refused == {(DOMAIN, "malformed"): len(refused) + 1}
    assert signed(json.dumps(good).encode()) == (204, "")
    assert signed(json.dumps({**good, "memory": 0.9, "seq": 2, "at": now - 1}).encode())[0] == 409  # older: a replay
    read = metrics.read(web_a, now)
    assert [(s.host, s.value, s.at) for s in read] == [("web-a", 0.5, now)]
    assert metrics.read(tier(("web-a", "127.0.0.1"), port=1, signal="cpu"), now) == []  # no CPU in it: missing
    # the same name on another address (a push from 127.0.0.2 claiming a host that is 127.0.0.1) is not believed
    status, text = signed(json.dumps({**good, "seq": 4}).encode(), source="127.0.0.2")
    assert status == 403 and text == "not-in-tier: 127.0.0.2 is no host of an autoscaled tier\n", text
    # (counted for no tier: the sender is in none, and the tier did not say it receives here)
    assert metrics.refused[(DOMAIN, "replay")] == 1 and metrics.refused[("", "not-in-tier")] == 1
    assert metrics.newest("web-a", "127.0.0.2") is None


def test_a_host_that_stopped_pushing_and_answering_gives_its_last_sample_with_its_own_time(
        agents: Callable[..., AgentProcess], receiver: tuple[AgentMetrics, int]) -> None:
    metrics, port = receiver
    admitted(metrics, ("gone", "127.0.0.1"), port=1)
    agent = agents("gone", "--interval", "0.1", "--push", f"http://127.0.0.1:{port}/push")
    wait_until(lambda: metrics.pushes.get("gone", 0) >= 1, 15, "a push")
    assert agent.terminate() == 0
    last = metrics.newest("gone", "127.0.0.1")
    assert last is not None
    # read a second after the last sample (an injected clock): past pull_after, so the gone agent is pulled first
    read = metrics.read(tier(("gone", "127.0.0.1"), port=agent.port, pull_after=0.1), last.at + 1.0)
    assert [(s.host, s.at) for s in read] == [("gone", last.at)]  # the decision judges its age


def test_the_agent_survives_a_receiver_that_is_down_and_logs_each_failure_streak_once(
        agents: Callable[..., AgentProcess]) -> None:
    port = free_port()
    agent = agents("lonely", "--interval", "0.1", "--step", "0", "--push", f"http://127.0.0.1:{port}/push")
    agent.wait_sample(lambda s: s["seq"] >= 10)
    assert len(agent.lines("failed")) == 1 and "Connection refused" in agent.lines("failed")[0], agent.log.read_text()
    metrics = AgentMetrics()
    admitted(metrics, ("lonely", "127.0.0.1"), port=1)
    metrics.listen("127.0.0.1", port)
    try:
        wait_until(lambda: metrics.pushes.get("lonely", 0) >= 2, 15, "pushes once the receiver is up")
    finally:
        metrics.close()
    agent.wait_sample(lambda s: s["seq"] >= 10 + s["pushed"] + 10)  # more samples, the receiver gone again
    wait_until(lambda: len(agent.lines("failed")) == 2, 15, "the second streak's line")
    assert len(agent.lines("works again")) == 1
    agent.wait_sample(lambda s: True)
    assert "Traceback" not in agent.log.read_text()


def test_sigterm_exits_zero_at_once(agents: Callable[..., AgentProcess]) -> None:
    agent = agents("term", "--interval", "30")
    agent.wait_sample()
    started = time.monotonic()
    assert agent.terminate() == 0
    assert time.monotonic() - started < 5  # not at the end of its 30 s interval
    assert "Traceback" not in agent.log.read_text()


@pytest.mark.parametrize(("args", "needle"), [
    (["--bind", "127.0.0.1", "--port", "99999"], "--port: must be a port between 1 and 65535, got '99999'"),
    (["--bind", "127.0.0.1", "--port", "PORT", "--interval", "0"],
     "--interval: must be a number of seconds above 0, got '0'"),
    (["--bind", "127.0.0.1", "--port", "PORT", "--heartbeat", "soon"],
     "--heartbeat: must be a number of seconds above 0, got 'soon'"),
    (["--bind", "127.0.0.1", "--port", "PORT", "--step", "-1"], "--step: must be a fraction of 0 or more, got '-1'"),
    (["--bind", "127.0.0.1", "--port", "PORT", "--push", "ftp://10.0.0.1/push"],
     "--push: must be an http://HOST[:PORT]/PATH URL"),
    (["--port", "PORT"], "the following arguments are required: --bind"),
    (["--bind", "not an address", "--port", "PORT"], "cannot listen on not an address:"),
    (["--bind", "127.0.0.1", "--port", "PORT", "--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_a_bad_argument_is_one_line_and_exit_1(args: list[str], needle: str) -> None:
    port = str(free_port())
    done = subprocess.run([SYSTEM_PYTHON, str(AGENT), *(port if a == "PORT" else a for a in args)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("agent: ") and needle in done.stderr, done.stderr


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([SYSTEM_PYTHON, str(AGENT), "--bind", "127.0.0.1", "--port", str(port)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == f"agent: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_reading_of_a_v2_container_cgroup(tmp_path: Path) -> None:
    """Files as a cgroup v2 container sees them (its own namespace: "0::/"), laid out by the test."""
    agent = load_agent()
    write(tmp_path, {"proc/self/cgroup": "0::/\n", "cg/memory.current": "150000000\n", "cg/memory.max": "200000000\n",
                     "cg/memory.stat": "anon 100000000\nfile 50000000\ninactive_file 30000000\n",
                     "cg/cpu.stat": "usage_usec 1000000\nuser_usec 600000\n", "cg/cpu.max": "50000 100000\n"})
    clock = iter([100.0, 102.0])
    meter = agent.Meter(tmp_path / "cg", tmp_path / "proc", clock=lambda: next(clock))
    assert meter.memory() == pytest.approx((150e6 - 30e6) / 200e6)
    assert meter.cpu() is None  # one reading
    (tmp_path / "cg/cpu.stat").write_text("usage_usec 1500000\n")
    assert meter.cpus() == 0.5  # the quota, below this machine's CPUs
    assert meter.cpu() == pytest.approx(0.5 / (2.0 * 0.5))


def test_the_reading_of_a_v1_container_cgroup_and_of_a_machine_without_a_limit(tmp_path: Path) -> None:
    agent = load_agent()
    write(tmp_path, {"proc/self/cgroup": "4:memory:/machine/lxc-1-web\n3:cpu,cpuacct:/machine/lxc-1-web\n",
                     "cg/memory/machine/lxc-1-web/memory.usage_in_bytes": "100\n",
                     "cg/memory/machine/lxc-1-web/memory.limit_in_bytes": "400\n",
                     "cg/memory/machine/lxc-1-web/memory.stat": "inactive_file 5\ntotal_inactive_file 20\n",
                     "cg/cpu,cpuacct/machine/lxc-1-web/cpuacct.usage": "1000000000\n",
                     "cg/cpu,cpuacct/machine/lxc-1-web/cpu.cfs_quota_us": "-1\n",
                     "cg/cpu,cpuacct/machine/lxc-1-web/cpu.cfs_period_us": "100000\n"})
    clock = iter([0.0, 1.0])
    meter = agent.Meter(tmp_path / "cg", tmp_path / "proc", clock=lambda: next(clock))
    assert meter.memory() == (100 - 20) / 400
    assert meter.cpu() is None
    (tmp_path / "cg/cpu,cpuacct/machine/lxc-1-web/cpuacct.usage").write_text("1500000000\n")
    cpus = len(os.sched_getaffinity(0))
    assert meter.cpus() == cpus and meter.cpu() == pytest.approx(0.5 / cpus)
    # no limit ("no limit" as v1 writes it): the machine's /proc/meminfo and /proc/stat
    (tmp_path / "cg/memory/machine/lxc-1-web/memory.limit_in_bytes").write_text("9223372036854771712\n")
    write(tmp_path, {"proc/meminfo": "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 750 kB\n",
                     "proc/stat": "cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3\n"})
    machine = agent.Meter(tmp_path / "cg", tmp_path / "proc")
    assert machine.memory() == 0.25 and machine.cpu() is None
    (tmp_path / "proc/stat").write_text("cpu  40 0 10 110 10 0 0 0 0 0\n")
    assert machine.cpu() == pytest.approx(30 / 70)  # busy 20 → 50 of 100 → 170 jiffies
