"""The scale-in's choice against a real HAProxy: the sessions in flight per server are read from the balancer's
stats page (as the loop reads an app domain's), and the idle server is the one removed, not the newest."""

from __future__ import annotations

import threading
import time

from crane_iac.autoscaler.metrics import current_sessions
from crane_iac.autoscaler.removal import choose
from crane_iac.objects import ScalableTier, TierHost
from tests.appdomain.conftest import NewHAProxy, StartApps
from tests.appdomain.processes import free_port, http_get


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
        deadline = time.monotonic() + 3
        while sum((seen := current_sessions(scalable) or {}).values()) < 1:
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        busy = next(name for name, n in seen.items() if n == 1)
        removal = choose(scalable.hosts, seen, 1)
        assert [h.physical for h in removal.removed] != [busy] and [h.physical for h in removal.kept] == [busy]
        assert "(0 sessions;" in removal.reason and f"{busy} 1" in removal.reason
    finally:
        slow.join()


def test_an_unreachable_balancer_gives_no_figures() -> None:
    assert current_sessions(tier(["a"], f"http://127.0.0.1:{free_port()}/stats;csv")) is None
