"""The web app (files/app.py), run by the system Python as in a web server's container, against a real PostgreSQL."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from tests.appdomain.conftest import StartApps
from tests.appdomain.processes import AppProcess, http_get
from tests.waiting import wait_until


def get_json(app: AppProcess, path: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(app.port, path)
    return status, json.loads(body)


def test_the_counter_advances_in_the_database(app_processes: StartApps, app_dsn: str) -> None:
    app, other = app_processes(2)
    answers = [get_json(a, "/") for a in (app, other, app)]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert [body["counter"] for _, body in answers] == [1, 2, 3]
    first = answers[0][1]
    assert first["served_by"] == app.endpoint and first["pid"] == app.proc.pid
    assert answers[1][1]["served_by"] == other.endpoint
    assert isinstance(first["host"], str) and first["host"]
    assert isinstance(first["rss_mib"], float) and 5 < first["rss_mib"] < 500
    with psycopg.connect(app_dsn) as conn:
        assert conn.execute("SELECT value FROM crane_counter WHERE id = 1").fetchone() == (3,)


def test_healthz_answers_ok_when_the_database_does(app_processes: StartApps) -> None:
    (app,) = app_processes(1)
    assert http_get(app.port, "/healthz") == (200, "ok\n")
    assert http_get(app.port, "/nowhere")[0] == 404


def test_without_its_database_the_app_is_unhealthy_quickly(tmp_path: Path) -> None:
    app = AppProcess("web-nodb", f"host={tmp_path} dbname=app user=postgres", tmp_path)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", app.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, 10, f"app {app.name} listening", detail=app.log.read_text)
        start = time.monotonic()
        status, body = http_get(app.port, "/healthz")
        took = time.monotonic() - start
        assert status == 503 and body.startswith("database: ") and "connection" in body, body
        assert took < 3  # what is tested: the check gives up on the database at once, it does not hang
        status, body = http_get(app.port, "/")
        assert status == 503 and json.loads(body)["error"].startswith("database: ")
    finally:
        app.stop()
    assert app.proc.returncode == 0


def test_the_app_reconnects_after_its_connections_are_cut(app_processes: StartApps, app_dsn: str) -> None:
    (app,) = app_processes(1)
    with ThreadPoolExecutor(3) as pool:  # three requests at once: three connections in the app's pool
        counters = sorted(body["counter"] for _, body in pool.map(lambda _: get_json(app, "/?sleep=0.3"), range(3)))
    assert counters == [1, 2, 3]
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        cut = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    # every pooled connection of the app is cut (how many the three requests opened depends on how they overlapped)
    assert cut is not None and cut[0] >= 1
    status, body = get_json(app, "/")
    assert (status, body["counter"]) == (200, 4)
    assert http_get(app.port, "/healthz") == (200, "ok\n")


def test_the_table_is_made_again_if_it_goes(app_processes: StartApps, app_dsn: str) -> None:
    (app,) = app_processes(1)
    assert get_json(app, "/")[1]["counter"] == 1
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE crane_counter")
    assert get_json(app, "/")[1]["counter"] == 1


def test_memory_reports_the_cgroup_and_the_process(app_processes: StartApps) -> None:
    (app,) = app_processes(1)
    status, body = get_json(app, "/memory")
    assert status == 200
    container = body["container"]
    assert isinstance(container, dict)
    assert isinstance(container["usage_bytes"], int) and container["usage_bytes"] > 1024 * 1024
    assert str(container["source"]).startswith("/sys/fs/cgroup")
    assert isinstance(body["process_rss_mib"], float) and body["process_rss_mib"] > 5



def test_memory_hold_keeps_memory_resident_until_freed(app_processes: StartApps) -> None:
    """The load an autoscaler test drives: ?hold=MB raises the process's resident memory by MB, ?hold=0 frees it."""
    (app,) = app_processes(1)
    before = get_json(app, "/memory")[1]["process_rss_mib"]
    status, held = get_json(app, "/memory?hold=64")
    assert status == 200 and held["held_mib"] == 64
    assert held["process_rss_mib"] > before + 60, (before, held)  # type: ignore[operator]
    freed = get_json(app, "/memory?hold=0")[1]
    assert freed["held_mib"] == 0 and freed["process_rss_mib"] < held["process_rss_mib"] - 50  # type: ignore[operator]
    assert get_json(app, "/memory?hold=lots")[0] == 400 and get_json(app, "/memory?hold=-1")[0] == 400


def test_sigterm_stops_the_app_cleanly(app_processes: StartApps) -> None:
    (app,) = app_processes(1)
    app.stop()
    assert app.proc.returncode == 0
    assert "Traceback" not in app.log.read_text()


def test_a_port_in_use_is_a_clear_error(app_processes: StartApps, app_dsn: str) -> None:
    (app,) = app_processes(1)
    done = subprocess.run(["/usr/bin/python3", str(Path(app.proc.args[1])), "--bind", "127.0.0.1", "--port",
                           str(app.port), "--dsn", app_dsn], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"app: cannot listen on 127.0.0.1:{app.port}" in done.stderr and "Traceback" not in done.stderr
