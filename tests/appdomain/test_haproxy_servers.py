"""The load balancer at work: a real HAProxy rendered by render_haproxy in front of real app.py processes on a
real PostgreSQL; files/haproxy_servers.py changes its servers at runtime under load, the health check takes a
killed app out, and the state file keeps the servers' states across a reload or a restart."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import psycopg

from crane_iac.appdomain.haproxy import Server
from tests.appdomain.conftest import NewHAProxy, StartApps
from tests.appdomain.processes import (
    SYNC,
    SYSTEM_PYTHON,
    AppProcess,
    HAProxyProcess,
    LoadGenerator,
    free_port,
    http_get,
    run_sync,
)
from tests.waiting import wait_until


def balancer(haproxy_process: NewHAProxy, apps: list[AppProcess], **options: object) -> tuple[HAProxyProcess, int]:
    """A started HAProxy in front of ``apps``, all of them up; and its port."""
    lb, port = haproxy_process(), free_port()
    lb.start(lb.render([a.server for a in apps], port, **options))
    for app in apps:
        lb.wait_status(app.name, "UP")
    return lb, port


def sync(lb: HAProxyProcess, servers: list[Server], *extra: str) -> dict[str, list[str]]:
    done = run_sync(lb, servers, *extra)
    assert done.returncode == 0, done.stderr
    summary: dict[str, list[str]] = json.loads(done.stdout)
    return summary


def of(apps: list[AppProcess]) -> list[Server]:
    return [a.server for a in apps]


def test_requests_reach_every_server_and_the_counter_advances(app_processes: StartApps,
                                                              haproxy_process: NewHAProxy, app_dsn: str) -> None:
    apps = app_processes(3)
    _, port = balancer(haproxy_process, apps)
    answers = [http_get(port, "/") for _ in range(30)]
    assert {status for status, _ in answers} == {200}
    bodies = [json.loads(body) for _, body in answers]
    assert Counter(b["served_by"] for b in bodies) == {a.endpoint: 10 for a in apps}  # roundrobin
    assert sorted(b["counter"] for b in bodies) == list(range(1, 31))
    with psycopg.connect(app_dsn) as conn:
        assert conn.execute("SELECT value FROM crane_counter").fetchall() == [(30,)]


def test_servers_change_at_runtime_under_load_without_a_failed_request(app_processes: StartApps,
                                                                        haproxy_process: NewHAProxy) -> None:
    apps = app_processes(5)
    lb, port = balancer(haproxy_process, apps[:3])
    with LoadGenerator(port) as load:
        load.wait_requests(20)

        summary = sync(lb, of(apps))  # 3 -> 5
        assert (summary["added"], summary["removed"]) == (["web-4", "web-5"], [])
        assert summary["unchanged"] == ["web-1", "web-2", "web-3"]
        assert set(lb.servers()) == {"web-1", "web-2", "web-3", "web-4", "web-5"}
        for app in apps[3:]:
            lb.wait_status(app.name, "UP", timeout=3)  # "UP 1/2" until its first check
        mark = load.snapshot()
        load.wait_requests(60)
        assert set(load.served_since(mark)) == {a.endpoint for a in apps}

        summary = sync(lb, of([apps[1], apps[3]]))  # 5 -> 2, draining slow requests in flight
        assert (summary["added"], summary["removed"]) == ([], ["web-1", "web-3", "web-5"])
        assert summary["forced"] == []
        assert lb.servers() == {"web-2": "UP", "web-4": "UP"}
        mark = load.snapshot()
        load.wait_requests(40)
        assert set(load.served_since(mark)) == {apps[1].endpoint, apps[3].endpoint}
    assert load.failures == []
    assert sum(load.served.values()) >= 120

    # the state file now holds the two servers, which is what a reload keeps
    state = lb.state_file.read_text()
    assert [line.split()[3] for line in state.splitlines()[2:] if line.strip()] == ["web-2", "web-4"]


def test_a_killed_app_leaves_the_pool_within_seconds_and_no_request_fails(app_processes: StartApps,
                                                                         haproxy_process: NewHAProxy) -> None:
    apps = app_processes(3)
    lb, port = balancer(haproxy_process, apps)
    with LoadGenerator(port) as load:
        load.wait_requests(20)
        apps[0].kill()
        took = lb.wait_status("web-1", "DOWN", timeout=5)
        mark = load.snapshot()
        load.wait_requests(30)
        assert apps[0].endpoint not in load.served_since(mark)
    assert took < 3, f"web-1 left the pool {took:.1f} s after it died"
    assert load.failures == []  # retried on another server: L7 retries (retry-on) with redispatch


def test_the_state_file_keeps_servers_and_their_states_across_reload_and_restart(app_processes: StartApps,
                                                                                  haproxy_process: NewHAProxy) -> None:
    apps = app_processes(4)
    lb, port = balancer(haproxy_process, apps[:2])
    sync(lb, of(apps[1:]))  # web-1 out, web-3 and web-4 in, at runtime
    apps[3].kill()
    lb.wait_status("web-4", "DOWN")
    assert sync(lb, of(apps[1:]))["unchanged"] == ["web-2", "web-3", "web-4"]  # no change: only saves the states
    config = lb.render([a.server for a in apps[1:]], port)

    with LoadGenerator(port) as load:
        load.wait_requests(20)
        lb.reload(config)  # a new process takes the sockets over; the old one finishes its requests
        # straight from the state file: web-4 is down before any check could have told the new process so
        assert lb.servers() == {"web-2": "UP", "web-3": "UP", "web-4": "DOWN"}
        assert "web/web-4 is DOWN, changed from server-state after a reload" in (lb.dir / "haproxy-1.log").read_text()
        load.wait_requests(40)
    assert load.failures == []
    assert lb.procs[0].wait(15) == 0  # the old process went once its requests were done

    lb.restart(config)
    assert lb.servers() == {"web-2": "UP", "web-3": "UP", "web-4": "DOWN"}
    assert set(lb.server_endpoints()) == {"web-2", "web-3", "web-4"}
    answers = [http_get(port, "/") for _ in range(10)]
    assert {json.loads(body)["served_by"] for _, body in answers} == {apps[1].endpoint, apps[2].endpoint}


def test_a_changed_address_is_set_and_an_interrupted_removal_is_undone(app_processes: StartApps,
                                                                       haproxy_process: NewHAProxy) -> None:
    apps = app_processes(3)
    lb, port = balancer(haproxy_process, apps[:2])
    wanted = [apps[0].server, Server("web-2", "127.0.0.1", apps[2].port)]  # web-2 moved to web-3's port
    lb.command("set server web/web-1 state drain")  # as a run killed while draining web-1 left it
    summary = sync(lb, wanted)
    assert summary["updated"] == ["web-1", "web-2"] and summary["added"] == summary["removed"] == []
    assert lb.server_endpoints() == {"web-1": apps[0].endpoint, "web-2": apps[2].endpoint}
    lb.wait_status("web-1", "UP")
    served = {json.loads(http_get(port, "/")[1])["served_by"] for _ in range(6)}
    assert served == {apps[0].endpoint, apps[2].endpoint}
    summary = sync(lb, wanted)
    assert summary["updated"] == [] and summary["unchanged"] == ["web-1", "web-2"]


def test_a_request_outliving_the_drain_timeout_is_cut_and_sent_again(app_processes: StartApps,
                                                                      haproxy_process: NewHAProxy) -> None:
    apps = app_processes(2)
    lb, port = balancer(haproxy_process, apps, balance="first")  # "first": every request to web-1
    with LoadGenerator(port, threads=1, slow_every=1, slow_seconds=3) as load:
        wait_until(lambda: "web-1" in busy(lb), 10, "a slow request in flight on web-1")
        summary = sync(lb, of(apps[1:]), "--drain-timeout", "1")
    # forced: its session was still open at the drain timeout and was shut (not waited for)
    assert summary["removed"] == ["web-1"] and summary["forced"] == ["web-1"]
    assert lb.servers() == {"web-2": "UP"}
    # the request cut from web-1 at the timeout was sent again, to web-2 (retry-on empty-response)
    assert (load.failures, load.served) == ([], {apps[1].endpoint: 1})


def busy(lb: HAProxyProcess) -> set[str]:
    return {line.split(",")[1] for line in lb.command("show stat").splitlines()[1:]
            if line.startswith("web,") and line.split(",")[4] not in ("", "0")}


def test_failures_are_clear_messages(haproxy_process: NewHAProxy) -> None:
    lb = haproxy_process()
    done = run_sync(lb, [])
    assert done.returncode == 1
    assert done.stderr.startswith(f"haproxy_servers: cannot talk to HAProxy's admin socket {lb.socket}")
    lb.start(lb.render([], free_port()))
    done = run_sync(lb, [], backend="nosuch")
    assert done.returncode == 1 and "HAProxy has no backend 'nosuch'" in done.stderr
    for bad, message in (('{"name": "x"}', "must be a JSON list"),
                         ('[{"name": "a", "address": "host.example", "port": 80}]', "is not an IP address"),
                         ('[{"name": "a", "address": "10.0.0.1", "port": 80}, '
                          '{"name": "a", "address": "10.0.0.2", "port": 80}]', "used twice"),
                         ("[{", "not JSON")):
            done = run_sync(lb, [], "--servers", bad)
            assert done.returncode == 1 and message in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
    done = run_sync(lb, [Server("web-9", "127.0.0.1", 9)], "--server-options", "check bogus-option")
    assert done.returncode == 1
    assert "HAProxy refused 'add server web/web-9 127.0.0.1:9 check bogus-option'" in done.stderr
    assert "bogus-option" in done.stderr.split(": ", 2)[-1]


def test_a_new_server_joins_only_once_it_answers_its_health_check(app_processes: StartApps,
                                                                  haproxy_process: NewHAProxy, app_dsn: str,
                                                                  tmp_path: Path) -> None:
    """The balancer's run may add a web server whose own run is still setting it up: it waits in maintenance, takes
    no request until ``GET /healthz`` answers 200, then joins (and a server that never answers fails the sync)."""
    apps = app_processes(2)
    lb, port = balancer(haproxy_process, apps)
    late = Server("web-3", "127.0.0.1", free_port())
    with LoadGenerator(port) as load:
        load.wait_requests(20)
        syncing = subprocess.Popen(
            [SYSTEM_PYTHON, str(SYNC), "--socket", lb.socket, "--backend", "web", "--state-file", str(lb.state_file),
             "--ready-path", "/healthz", "--ready-timeout", "30", "--servers",
             json.dumps([{"name": s.name, "address": s.address, "port": s.port} for s in [*of(apps), late]])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: "web-3" in lb.servers() or syncing.poll() is not None, 15, "the sync adding web-3")
        # nothing listens on web-3's port yet: the sync can only wait for its GET /healthz
        assert syncing.poll() is None, syncing.communicate()
        assert lb.servers()["web-3"] == "MAINT"  # added, but taking no request
        app = AppProcess("web-3", app_dsn, tmp_path, port=late.port)  # now the server's own run has set it up
        try:
            out, err = syncing.communicate(timeout=40)
            assert syncing.returncode == 0, err
            assert json.loads(out)["added"] == ["web-3"]
            mark = load.snapshot()
            load.wait_requests(40)
            assert load.served_since(mark)[f"127.0.0.1:{late.port}"] > 0
        finally:
            app.stop()
    assert load.failures == [], load.failures[:3]
    never = Server("web-9", "127.0.0.1", free_port())
    failed = run_sync(lb, [*of(apps), never], "--ready-path", "/healthz", "--ready-timeout", "1")
    assert failed.returncode == 1 and "web-9 did not answer GET /healthz with 200 within 1 s" in failed.stderr
