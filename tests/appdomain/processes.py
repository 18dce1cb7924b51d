"""Real processes for the app domain tests: the web app (files/app.py with the system Python, as in a web server's
container), HAProxy on the loopback with its admin socket in a temp directory, and a load generator; each is
stopped whatever happens by the fixture that started it.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crane_iac.appdomain import haproxy as lb
from crane_iac.appdomain.haproxy_check import find_haproxy
from tests.conftest import free_port
from tests.waiting import wait_until

FILES = Path(lb.__file__).parent / "files"
APP = FILES / "app.py"
SYNC = FILES / "haproxy_servers.py"
#: the Python the containers run (the host's own), not the venv's
SYSTEM_PYTHON = "/usr/bin/python3"


class ProcessFailed(Exception):
    """A process the test started did not come up; the message carries its output."""


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
    """One request on a new connection that closes after it (no keep-alive)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class AppProcess:
    """files/app.py on 127.0.0.1:port, run by the system Python against the database ``dsn``."""

    def __init__(self, name: str, dsn: str, log_dir: Path, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(APP), "--bind", "127.0.0.1", "--port", str(self.port),
                                          "--dsn", dsn], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    @property
    def server(self) -> lb.Server:
        return lb.Server(self.name, "127.0.0.1", self.port)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 15) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise ProcessFailed(f"app {self.name} exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                return http_get(self.port, "/healthz", timeout=3)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout, f"app {self.name} healthy", detail=lambda: f"\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the app dies as a crashed container would, mid-request."""
        _stop(self.proc, signal.SIGKILL)

    def signal_stop(self) -> None:
        """SIGTERM without waiting, to stop several at once."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        _stop(self.proc)


class HAProxyProcess:
    """HAProxy in the foreground (-db) with ``config``; ``reload`` starts a new process that takes the listening
    sockets over (-x) and tells the old one to finish its requests and go (-sf)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.cfg = directory / "haproxy.cfg"
        self.socket = str(directory / "admin.sock")
        self.state_file = directory / "servers.state"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.binary = find_haproxy()

    def render(self, servers: list[lb.Server], port: int, **options: Any) -> str:
        """haproxy.cfg for this balancer on 127.0.0.1:port, with its socket and state file in its directory."""
        return lb.render_haproxy("testdomain", bind="127.0.0.1", port=port, servers=servers,
                                 runtime_socket=self.socket, state_file=str(self.state_file), **options)

    def start(self, config: str, *, takeover: bool = False) -> None:
        """A new HAProxy process with ``config``; returns once it answers on the admin socket."""
        self.cfg.write_text(config)
        log = self.dir / f"haproxy-{len(self.procs)}.log"
        argv = [self.binary, "-db", "-f", str(self.cfg)]
        old = self.procs[-1] if self.procs else None
        if takeover and old is not None:
            argv += ["-x", self.socket, "-sf", str(old.pid)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)

        def answers() -> bool:
            if proc.poll() is not None:
                raise ProcessFailed(f"haproxy exited ({proc.returncode}):\n{log.read_text()}")
            try:
                return f"Pid: {proc.pid}\n" in self.command("show info")
            except OSError:
                return False

        wait_until(answers, 15, f"haproxy answering on {self.socket}", detail=lambda: f"\n{log.read_text()}")

    def reload(self, config: str) -> None:
        self.start(config, takeover=True)

    def restart(self, config: str) -> None:
        """Stop, then start afresh with ``config`` (no takeover: a new process reading the state file)."""
        self.stop()
        self.start(config)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(self.socket)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, backend: str = lb.BACKEND) -> dict[str, str]:
        """The backend's servers by name, with their status (UP, DOWN, MAINT, DRAIN, ...) from ``show stat``."""
        found = {}
        for line in self.command("show stat").splitlines()[1:]:
            f = line.split(",")
            if len(f) > 17 and f[0] == backend and f[1] not in ("FRONTEND", "BACKEND"):
                found[f[1]] = f[17]
        return found

    def server_endpoints(self, backend: str = lb.BACKEND) -> dict[str, str]:
        """name -> address:port as the running HAProxy has them."""
        found = {}
        for line in self.command(f"show servers state {backend}").splitlines():
            f = line.split()
            if len(f) > 18 and not line.startswith("#"):
                found[f[3]] = f"{f[4]}:{f[18]}"
        return found

    def wait_status(self, name: str, status: str, timeout: float = 10) -> float:
        """Seconds until server ``name`` has ``status``; AssertionError after ``timeout``."""
        start = time.monotonic()
        wait_until(lambda: self.servers().get(name) == status, timeout, f"{name} {status}",
                   detail=lambda: f"it is {self.servers().get(name)}")
        return time.monotonic() - start

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc, signal.SIGUSR1)  # soft stop: finish requests, then exit


def run_sync(haproxy: HAProxyProcess, servers: list[lb.Server], *extra: str, socket_path: str | None = None,
             backend: str = lb.BACKEND) -> subprocess.CompletedProcess[str]:
    """files/haproxy_servers.py with the system Python, as Ansible runs it in the load balancer's container."""
    wanted = json.dumps([{"name": s.name, "address": s.address, "port": s.port} for s in servers])
    return subprocess.run([SYSTEM_PYTHON, str(SYNC), "--socket", socket_path or haproxy.socket, "--backend", backend,
                           "--state-file", str(haproxy.state_file), "--servers", wanted, *extra],
                          capture_output=True, text=True, timeout=120)


@dataclass
class LoadGenerator:
    """Threads sending requests through the balancer without pause, each on a new connection (no keep-alive);
    every ``slow_every``-th request waits ``slow_seconds`` in the app first. Counts answers by the app that
    served them and keeps every failure."""

    port: int
    threads: int = 4
    slow_every: int = 4
    slow_seconds: float = 0.4
    served: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> LoadGenerator:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            path = f"/?sleep={self.slow_seconds}" if (n + worker) % self.slow_every == 0 else "/"
            try:
                status, body = http_get(self.port, path, timeout=30)
                outcome = json.loads(body)["served_by"] if status == 200 else f"HTTP {status}: {body[:200]}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                status, outcome = 0, f"{type(exc).__name__}: {exc}"
            with self._lock:
                if status == 200:
                    self.served[outcome] += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {path} {outcome}")

    def total(self) -> int:
        with self._lock:
            return sum(self.served.values()) + len(self.failures)

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` more requests have been answered."""
        target = self.total() + count
        wait_until(lambda: self.total() >= target, timeout, f"{target} requests from the load generator",
                   every=0.02, detail=lambda: f"it made {self.total()}")

    def served_since(self, mark: Counter[str]) -> Counter[str]:
        with self._lock:
            return self.served - mark

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.served)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)


def check_system_python() -> str | None:
    """Why the system Python cannot run the app (no psycopg), or None."""
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import psycopg"], capture_output=True, text=True)
    if done.returncode != 0:
        return (f"{SYSTEM_PYTHON} cannot import psycopg (the app needs Debian's python3-psycopg; "
                f"run scripts/install.sh): {done.stderr.strip()}")
    return None

