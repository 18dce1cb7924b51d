#!/usr/bin/python3
"""The app domain's web app: a page counter in the storage server's PostgreSQL, served by each web server.

Runs in a web server's container with the system Python 3 (the standard library and Debian's python3-psycopg):

    python3 app.py --bind 10.0.0.6 --port 8000 --dsn "host=10.0.0.9 dbname=app user=app"

GET /          adds one to the counter and returns JSON {host, counter, rss_mib, served_by, pid}
               (?sleep=SECONDS first waits that long, at most 10 s: a slow request, to test draining)
GET /healthz   200 "ok" when the database answers within the timeout, else 503 (the load balancer's check)
GET /memory    this container's memory use (its cgroup) and this process's; ?hold=MB keeps MB MiB allocated
               until the next hold (0 frees it): the load an autoscaler test or demo drives
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg

T = TypeVar("T")
MIB = 1024 * 1024
#: idle database connections kept for the next requests (ThreadingHTTPServer starts a thread per request)
POOL_SIZE = 8
MAX_SLEEP = 10.0
_LOCK_ID = 0x6372616E  # "cran": serializes creating the table between web servers starting together


class Database:
    """A small pool of connections to the storage server; a connection that failed is dropped, and the work is
    tried once more on a new one (the server restarted, or a connection was cut)."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.idle: list[psycopg.Connection[Any]] = []
        self.lock = threading.Lock()
        self.table_ready = False

    def _connect(self) -> psycopg.Connection[Any]:
        ms = int(self.timeout * 1000)
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(2, round(self.timeout)),
                               options=f"-c statement_timeout={ms}", tcp_user_timeout=ms,
                               keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        conn = conn or self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self.lock:
            if not conn.closed and len(self.idle) < POOL_SIZE:
                self.idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        for attempt in (1, 2):
            try:
                with self.connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
                # the server restarted or cut connections: the idle ones are as dead as this one was
                self.table_ready = False
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ping(self) -> None:
        self.run(lambda conn: conn.execute("SELECT 1").fetchone())

    def increment(self) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            if not self.table_ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                    conn.execute("CREATE TABLE IF NOT EXISTS crane_counter (id integer PRIMARY KEY, "
                                 "value bigint NOT NULL)")
                self.table_ready = True
            row = conn.execute("INSERT INTO crane_counter (id, value) VALUES (1, 1) ON CONFLICT (id) "
                               "DO UPDATE SET value = crane_counter.value + 1 RETURNING value").fetchone()
            assert row is not None
            return int(row[0])

        return self.run(work)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


def process_rss_mib() -> float | None:
    """This process's resident memory (VmRSS in /proc/self/status), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _cgroup_dirs() -> list[Path]:
    """Where this process's memory cgroup may be: its own cgroup (v2, from /proc/self/cgroup; "/" inside a
    container with its own cgroup namespace), the cgroup root, and cgroup v1's memory controller."""
    dirs = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and controllers == "":
                dirs.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
            elif "memory" in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/"))
    except (OSError, ValueError):
        pass
    return [*dirs, Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")]


def _read_bytes(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max": no limit
    value = int(text)
    return None if value >= 1 << 60 else value  # cgroup v1 writes "no limit" as a huge number


def container_memory() -> dict[str, Any]:
    """The container's memory use from its cgroup (memory.current, or v1's memory.usage_in_bytes) and limit."""
    for directory in _cgroup_dirs():
        for usage_name, limit_name in (("memory.current", "memory.max"),
                                       ("memory.usage_in_bytes", "memory.limit_in_bytes")):
            usage = _read_bytes(directory / usage_name)
            if usage is not None:
                limit = _read_bytes(directory / limit_name)
                return {"usage_bytes": usage, "usage_mib": round(usage / MIB, 1), "limit_bytes": limit,
                        "source": str(directory / usage_name)}
    return {"usage_bytes": None, "usage_mib": None, "limit_bytes": None, "source": None}


class AppHandler(BaseHTTPRequestHandler):
    """The app's three pages; HTTP/1.0, so each connection carries one request and closes."""

    server: AppServer
    #: a buffered response, flushed once the request is handled: headers and body leave in one write, so a server
    #: killed mid-request sends nothing (HAProxy retries that elsewhere: retry-on empty-response), never headers
    #: without their body (which no proxy can retry)
    wbufsize = -1

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            self.counter(query)
        elif url.path == "/healthz":
            self.healthz()
        elif url.path == "/memory":
            self.memory(query)
        else:
            self.reply(404, {"error": f"no page {url.path}"})

    def counter(self, query: dict[str, list[str]]) -> None:
        try:
            delay = min(MAX_SLEEP, max(0.0, float(query.get("sleep", ["0"])[0])))
        except ValueError:
            self.reply(400, {"error": "sleep must be a number of seconds"})
            return
        time.sleep(delay)
        try:
            value = self.server.database.increment()
        except psycopg.Error as exc:
            self.reply(503, {"error": f"database: {exc}".strip()})
            return
        local = self.connection.getsockname()
        self.reply(200, {"host": socket.gethostname(), "counter": value, "rss_mib": process_rss_mib(),
                         "served_by": f"{local[0]}:{local[1]}", "pid": os.getpid()})

    def healthz(self) -> None:
        try:
            self.server.database.ping()
        except psycopg.Error as exc:
            self.reply(503, f"database: {exc}".strip() + "\n")
            return
        self.reply(200, "ok\n")

    def memory(self, query: dict[str, list[str]]) -> None:
        """``?hold=MB``: keep MB MiB allocated (touched, so resident) until the next ``hold`` (0 frees it): the
        load an autoscaler test or demo drives. Then this container's memory and this process's."""
        if "hold" in query:
            try:
                mib = int(query["hold"][0])
            except ValueError:
                self.reply(400, {"error": f"hold={query['hold'][0]!r} is not a whole number of MiB"})
                return
            if not 0 <= mib <= 65536:
                self.reply(400, {"error": f"hold={mib} is not between 0 and 65536 MiB"})
                return
            self.server.hold(mib)
        self.reply(200, {"container": container_memory(), "process_rss_mib": process_rss_mib(),
                         "held_mib": self.server.held_mib, "host": socket.gethostname()})

    def reply(self, status: int, body: dict[str, Any] | str) -> None:
        data = (json.dumps(body) + "\n" if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log (the load balancer sees every request); errors are still logged to stderr."""


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    #: the listen backlog: socketserver's default of 5 drops connections (the client waits out its SYN retries) as
    #: soon as the accepting thread falls behind a burst, as under the load balancer's traffic plus direct requests
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], database: Database) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.database = database
        self.held: list[mmap.mmap] = []
        self.held_lock = threading.Lock()
        super().__init__(address, AppHandler)

    @property
    def held_mib(self) -> int:
        return len(self.held)

    def hold(self, mib: int) -> None:
        """Hold ``mib`` MiB from now on, in 1 MiB anonymous mappings each written to (so the kernel counts them);
        a freed block is unmapped at once (malloc's heap would keep it resident)."""
        with self.held_lock:
            for block in self.held[mib:]:
                block.close()
            del self.held[mib:]
            while len(self.held) < mib:
                block = mmap.mmap(-1, MIB)
                block.write(b"\x01" * MIB)
                self.held.append(block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The app domain's web app")
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True, help='the storage server: "host=... dbname=... user=..."')
    parser.add_argument("--db-timeout", type=float, default=2.0, help="seconds a database call may take")
    args = parser.parse_args(argv)
    database = Database(args.dsn, args.db_timeout)
    try:
        server = AppServer((args.bind, args.port), database)
    except OSError as exc:
        print(f"app: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"app: serving on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
