"""App domain fixtures: the web app's database on the session's real PostgreSQL, real app.py processes and real
HAProxy processes, each stopped whatever the test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.appdomain.processes import AppProcess, HAProxyProcess, check_system_python
from tests.state.postgresql_server import PostgresServer

StartApps = Callable[[int], list[AppProcess]]
NewHAProxy = Callable[[], HAProxyProcess]


@pytest.fixture
def app_dsn(postgresql_server: PostgresServer) -> Iterator[str]:
    """A libpq DSN of a new empty database on the session's PostgreSQL (its Unix socket), dropped afterwards."""
    url = postgresql_server.create_database()
    name = url.split("@/", 1)[1].split("?", 1)[0]
    try:
        yield f"host={postgresql_server.dir} dbname={name} user=postgres"
    finally:
        postgresql_server.drop_database(url)


@pytest.fixture
def app_processes(app_dsn: str, tmp_path: Path) -> Iterator[StartApps]:
    """``start(n)``: n more app.py processes on loopback ports (web-1, web-2, ...), healthy; all stopped at the end."""
    problem = check_system_python()
    if problem:
        pytest.fail(problem, pytrace=False)
    started: list[AppProcess] = []

    def start(n: int) -> list[AppProcess]:
        batch = [AppProcess(f"web-{len(started) + i + 1}", app_dsn, tmp_path) for i in range(n)]
        started.extend(batch)
        for app in batch:
            app.wait_healthy()
        return batch

    try:
        yield start
    finally:
        for app in started:
            app.signal_stop()
        for app in started:
            app.stop()


@pytest.fixture
def haproxy_process(tmp_path: Path) -> Iterator[NewHAProxy]:
    """``new()``: a real HAProxy, not yet started, with its admin socket and state file in a directory of its own
    under tmp_path (``proc.start(proc.render(servers, port))``); at the end every process it started, reloads
    included, is stopped."""
    made: list[HAProxyProcess] = []

    def new() -> HAProxyProcess:
        directory = tmp_path / f"lb{len(made) + 1}"
        directory.mkdir()
        made.append(HAProxyProcess(directory))
        return made[-1]

    try:
        yield new
    finally:
        for proc in made:
            proc.stop()
