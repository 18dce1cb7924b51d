"""The scale-in's choice against a real HAProxy: the sessions in flight per server are read from the balancer's
stats page (as the loop reads an app domain's), and the idle server is the one removed, not the newest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from crane_iac.autoscaler.agents import AgentMetrics
from crane_iac.autoscaler.metrics import HAProxySessions, current_sessions
from crane_iac.autoscaler.removal import choose
from crane_iac.errors import CraneError
from crane_iac.scaling import ScalableTier, TierHost
from tests.appdomain.conftest import NewHAProxy, StartApps
from tests.appdomain.processes import free_port, http_get
from tests.waiting import wait_until


def tier(names: list[str], stats_url: str) -> ScalableTier:
    hosts = tuple(TierHost(f"appdomain.t/container.{n}", "container", n, i) for i, n in enumerate(names, start=1))
    return ScalableTier(address="appdomain.t", setting="appdomain.t/web.size", size=len(hosts), declared=len(hosts),
                        min=1, max=4, hosts=hosts, policy={}, stats_url=stats_url)


def test_the_server_with_a_request_in_flight_stays_and_an_idle_one_goes(app_processes: StartApps,
                                                                        haproxy_process: NewHAProxy) -> None:
    apps = app_processes(2)
    lb, port, stats = haproxy_process(), free_port(), free_port()
    lb.start(lb.render([a.server for a in apps], port, balance="leastconn", stats_port=stats))
    for app in apps:
        lb.wait_status(app.name, "UP")
    scalable = tier([a.name for a in apps], f"http://127.0.0.1:{stats}/stats;csv")
    assert current_sessions(scalable) == {a.name: 0 for a in apps}

    slow = threading.Thread(target=http_get, args=(port, "/?sleep=4"))
    slow.start()
    try:
        # the request sleeps 4 s in the app (what is tested: a session in flight); wait until HAProxy counts it
        def in_flight() -> dict[str, int] | None:
            found = current_sessions(scalable) or {}
            return found if sum(found.values()) >= 1 else None

        seen = wait_until(in_flight, 3, "the slow request's session", detail=lambda: current_sessions(scalable))
        busy = next(name for name, n in seen.items() if n == 1)
        removal = choose(scalable.hosts, seen, 1)
        assert [h.physical for h in removal.removed] != [busy] and [h.physical for h in removal.kept] == [busy]
        assert "(0 sessions;" in removal.reason and f"{busy} 1" in removal.reason
    finally:
        slow.join()


def test_an_unreachable_balancer_gives_no_figures() -> None:
    assert current_sessions(tier(["a"], f"http://127.0.0.1:{free_port()}/stats;csv")) is None


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A loopback server that answers every connection with a line that is not HTTP, then closes it (a balancer or
    agent gone wrong, or something else on its port)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        listener.settimeout(0.2)
        stopping = threading.Event()

        def serve() -> None:
            while not stopping.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"certainly not HTTP\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            stopping.set()
            thread.join()


def test_a_balancer_or_agent_answering_garbage_is_no_figure_not_a_crash(garbage_server: int) -> None:
    scalable = tier(["a"], f"http://127.0.0.1:{garbage_server}/stats;csv")
    assert current_sessions(scalable) is None
    with pytest.raises(CraneError, match="cannot be read"):
        HAProxySessions().read(scalable, time.time())
    host = TierHost("appdomain.t/container.a", "container", "a", 1, ip="127.0.0.1")
    metrics = AgentMetrics()
    metrics.admit(ScalableTier("appdomain.t", "appdomain.t/web.size", 1, 1, 1, 4, (host,), {}), bytes(32))
    assert metrics.pull(host, garbage_server) is None  # not HTTP: no answer (nothing to refuse)
