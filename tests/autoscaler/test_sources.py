"""Which source the autoscaler reads, and the app domain's side of the agents: the loaded tier's addresses, the web
role's variables, and the loop's agents on loopback: the domain on 127.0.0.0/24, so the host's address is 127.0.0.1
and real agents (files/agent.py) run as the web servers on 127.0.0.12 and 127.0.0.13."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.autoscaler.agents import AgentMetrics
from crane_iac.autoscaler.controller import Autoscaler
from crane_iac.autoscaler.metrics import HAProxySessions, ProviderCpu, ProviderMemory, SimulatedMetrics
from crane_iac.autoscaler.policy import ScalingPolicy
from crane_iac.engine.workspace import Workspace
from crane_iac.errors import DiagnosticsError
from crane_iac.projectkey import agent_key_name, derived_key
from crane_iac.scaling import ScalableTier
from tests.appdomain.processes import FILES, SYSTEM_PYTHON, free_port
from tests.engine.test_workspace import apply, project
from tests.waiting import wait_until

STACK = """
from crane_iac import AppDomain, Network, ScalingPolicy, WebTier

lan = Network("shop-net", mode="isolated", ipv4="{subnet}", dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size=2, min=1, max=4),
          autoscale=ScalingPolicy(upper=0.99, lower=0.001, warmup=0, {policy}))
"""


def stack(policy: str = 'source="agent"', subnet: str = "10.87.0.0/24") -> str:
    return STACK.format(policy=policy, subnet=subnet)


def loaded_tier(root: Path) -> ScalableTier:
    (tier,) = Workspace.open(root).load().tiers
    return tier


def web_vars(root: Path) -> dict[str, object]:
    changes = {c.address: c for c in Workspace.open(root).plan().changes}
    after = changes["appdomain.shop/configuration.web-1"].after
    assert after is not None
    return dict(after["vars"])


def test_an_agent_policy_gives_the_tier_its_addresses_and_the_web_role_the_agent(tmp_path: Path) -> None:
    root = project(tmp_path, stack('source="agent", agent_port=9700'))
    tier = loaded_tier(root)
    assert [(h.physical, h.ip) for h in tier.hosts] == [("shop-web-1", "10.87.0.12"), ("shop-web-2", "10.87.0.13")]
    assert (tier.agent_listen, tier.agent_port) == ("10.87.0.1", 9700)
    assert web_vars(root) == {"app_port": 8080, "dsn": web_vars(root)["dsn"], "agent_port": 9700,
                              "agent_push": "http://10.87.0.1:9700/push"}


@pytest.mark.parametrize("policy", ['source="provider"', 'signal="sessions", capacity=50.0'])
def test_a_policy_that_does_not_read_the_agents_installs_none(tmp_path: Path, policy: str) -> None:
    """The provider's reading, or HAProxy's session rate (whatever the source says): no agent would be listened to."""
    root = project(tmp_path, stack(policy))
    tier = loaded_tier(root)
    assert (tier.agent_listen, tier.agent_port) == (None, None) and tier.hosts[0].ip == "10.87.0.12"
    assert set(web_vars(root)) == {"app_port", "dsn"}


@pytest.mark.parametrize(("policy", "needle"), [
    ('source="agent", agent_port=8080', "autoscale.agent_port 8080 clashes with the web servers' app"),
    ('source="agent", agent_port=22', "autoscale.agent_port 22 clashes with the web servers' sshd"),
])
def test_an_agent_port_that_clashes_is_a_load_error(tmp_path: Path, policy: str, needle: str) -> None:
    root = project(tmp_path, stack(policy))
    with pytest.raises(DiagnosticsError, match=needle):
        Workspace.open(root).load()


def test_pull_after_must_be_below_stale_after_for_the_agents_alone() -> None:
    with pytest.raises(DiagnosticsError, match=r"pull_after \(10\) must be below stale_after \(5\)"):
        ScalingPolicy(source="agent", stale_after=5)
    assert ScalingPolicy(stale_after=5, source="provider").stale_after == 5  # the provider's reading never pulls
    assert ScalingPolicy().source == "agent"  # the default


def test_the_loop_picks_the_source_by_endpoint_signal_and_policy(tmp_path: Path) -> None:
    root = project(tmp_path, stack())
    lines: list[str] = []
    scaler = Autoscaler(Workspace.open(root), log=lines.append)
    tier = loaded_tier(root)
    pick = scaler._source
    assert isinstance(pick(tier, ScalingPolicy(source="agent"), False, {}), SimulatedMetrics)  # the sandbox
    assert isinstance(pick(tier, ScalingPolicy(signal="sessions", capacity=50.0, source="agent"), True, {}),
                      HAProxySessions)
    assert isinstance(pick(tier, ScalingPolicy(source="provider"), True, {}), ProviderMemory)
    cpu = pick(tier, ScalingPolicy(signal="cpu", source="provider"), True, {})
    assert isinstance(cpu, ProviderCpu) and cpu.readings is scaler.cpu_readings  # kept across periods
    try:
        agents = pick(tier, ScalingPolicy(source="agent"), True, {})
        assert isinstance(agents, AgentMetrics) and pick(tier, ScalingPolicy(source="agent"), True, {}) is agents
        # 10.87.0.1 is not this machine's: pulls alone, said once
        assert lines == ["appdomain.shop: cannot receive the agents' pushes on 10.87.0.1:9465: Cannot assign "
                         "requested address; pulling every server instead"]
    finally:
        scaler.close()
    assert scaler.agents is None


@pytest.fixture
def loopback_agents(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An applied domain on 127.0.0.0/24 (the sandbox: its configuration runs are skipped), and real agents as its
    two web servers (127.0.0.12 and .13) pushing every sample to 127.0.0.1; the agents are stopped at the end and
    must exit 0."""
    port = free_port()
    root = project(tmp_path, stack(f'source="agent", agent_port={port}', subnet="127.0.0.0/24"))
    apply(Workspace.open(root))
    procs = []
    # the key crane's web role would give them: the domain's, derived from the project's key (made here)
    key_file = tmp_path / "agent.key"
    key_file.write_text(derived_key(root / ".crane", agent_key_name("appdomain.shop")).hex())
    for i, ip in ((1, "127.0.0.12"), (2, "127.0.0.13")):
        with (tmp_path / f"agent-{i}.log").open("wb") as log:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(
                [SYSTEM_PYTHON, str(FILES / "agent.py"), "--bind", ip, "--port", str(port), "--name",
                 f"shop-web-{i}", "--interval", "0.2", "--step", "0", "--push", f"http://127.0.0.1:{port}/push",
                 "--key-file", str(key_file)],
                stdout=subprocess.DEVNULL, stderr=log))
    try:
        for ip in ("127.0.0.12", "127.0.0.13"):
            wait_until(lambda ip=ip: _answers(f"http://{ip}:{port}/sample"), 15, f"an agent's sample on {ip}:{port}")
        yield root, port
    finally:
        for proc in procs:
            proc.terminate()
        assert [proc.wait(10) for proc in procs] == [0, 0]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True  # the agent's first sample is taken
    except OSError:
        return False


def test_the_loops_agents_are_pulled_then_take_pushes_from_the_servers_addresses(
        loopback_agents: tuple[Path, int]) -> None:
    """What a period on a host that reaches its guests does (the sandbox never does, so the source is asked for as
    such): the receiver starts on the domain's host address (127.0.0.1 here) and is kept from one period to the
    next; the first period pulls (nothing was pushed yet), then the agents' pushes, sent from their own addresses,
    are kept under them and read."""
    root, port = loopback_agents
    lines: list[str] = []
    scaler = Autoscaler(Workspace.open(root), log=lines.append)
    loaded, state = Workspace.open(root).load_with_state()
    (tier,) = loaded.tiers
    policy = ScalingPolicy(**tier.policy)
    try:
        source = scaler._source(tier, policy, True, {})
        decision = scaler._decide(tier, policy, state, source, time.time())
        assert (decision.reading.fresh, decision.reading.missing) == (2, 0), decision
        assert lines == [f"appdomain.shop: receiving the agents' pushes on 127.0.0.1:{port}"]
        assert isinstance(source, AgentMetrics) and source.listening == [("127.0.0.1", port)]
        pulled = {name: source.newest(name, ip) for name, ip in (("shop-web-1", "127.0.0.12"),
                                                                 ("shop-web-2", "127.0.0.13"))}
        assert None not in pulled.values()

        def pushed_since() -> bool:  # nothing reads meanwhile: only a push from the server's address is newer
            return all((s := source.newest(name, ip)) is not None and s.seq > pulled[name].seq  # type: ignore[union-attr]
                       for name, ip in (("shop-web-1", "127.0.0.12"), ("shop-web-2", "127.0.0.13")))

        wait_until(pushed_since, 30, "a push from each server's address", detail=lambda: (source.pushes, pulled))
        assert scaler._source(tier, policy, True, {}) is source and len(lines) == 1  # the same receiver
        again = scaler._decide(tier, policy, state, source, time.time())
        assert again.reading.fresh == 2, again
        assert source.refused == {}  # the loop's key is the agents': nothing refused
    finally:
        scaler.close()
    with pytest.raises(OSError):  # the receiver went with the loop
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
