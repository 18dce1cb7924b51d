#!/usr/bin/python3
"""crane's monitoring agent on a web server: its host's memory and CPU utilisation, for the autoscaler to pull and
pushed to it at once when they move (adaptive push/pull: fast reaction without polling every host every second).

Runs beside the app with the system Python 3 and the standard library alone; it is one file (over the modules' usual
size) on purpose, as it is shipped to a guest as one script:

    python3 agent.py --bind 10.79.0.13 --port 9465 --push http://10.79.0.1:9465/push --name shop-web-1 \
        --key-file /run/crane/agent.key --user nobody:nogroup

Every ``--interval`` seconds (default 1; the first a quarter of a second after the start at most, CPU being the
difference of two readings) it samples. ``GET /sample`` answers the newest sample as JSON: ``{"host", "memory",
"cpu", "at", "seq", "pushed"}``: memory and CPU as fractions (null while unreadable), ``at`` its clock's unix time,
``seq`` the sample's number since the agent started, ``pushed`` how many pushes the receiver has accepted. The same
JSON is POSTed to ``--push`` (from the ``--bind`` address, which the receiver knows the host by) at once when memory
or CPU has moved by more than ``--step`` (default 0.05) since the last accepted push, and every ``--heartbeat``
seconds (default 30) regardless. A failed push is logged to stderr once per streak of failures and retried with the
next sample that calls for one; it never stops the agent. SIGTERM or SIGINT: exit 0.

Proof that a sample is this agent's (docs/decisions/agent-trust.md): with ``--key-file`` (the domain's key in hex,
a root-only file crane's web role writes), each push carries ``X-Crane-Mac``, the hex HMAC-SHA256 under the key of
``push\n`` and the exact body, and each answer to ``GET /sample?nonce=N`` the HMAC of ``pull\n``, N, ``\n`` and the
exact body: the receiver checks both, so only crane's agent on a host of the tier is believed, and a pull's answer
cannot be replayed (the nonce is the receiver's) nor a push (``at`` and ``seq`` must be newer than the last push
believed). The key is read once at the start; with ``--user`` the agent then runs as that user (the app's), which
cannot read the file.

What it measures: the memory cgroup it runs in when that has a limit (a container): its charge less the inactive
page cache the kernel can drop (the figure the provider reads from the host), over the limit; CPU from the same
cgroup (cpu.stat's usage_usec on cgroup v2, cpuacct.usage on v1) over wall time and the CPUs it may use (its
affinity, or fewer by the cgroup's CPU quota). Without a limit (a VM, a bare host): the machine's /proc/meminfo
(MemTotal less MemAvailable) and /proc/stat.
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import hmac
import http.client
import json
import os
import pwd
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

#: seconds a push may take
PUSH_TIMEOUT = 2.0
#: the header that carries a sample's MAC
MAC_HEADER = "X-Crane-Mac"


def mac(key: bytes, kind: str, body: bytes, nonce: str = "") -> str:
    """The hex HMAC-SHA256 of a push (``kind`` "push") or of a pull's answer ("pull", with the pull's nonce)."""
    text = f"{kind}\n".encode() + (f"{nonce}\n".encode() if kind == "pull" else b"") + body
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def _read_int(path: Path) -> int | None:
    """A cgroup file's number; None when missing, "max" (no limit) or cgroup v1's "no limit" (a huge number)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    value = int(text)
    return None if value >= 1 << 60 else value


def _stat(path: Path) -> dict[str, int]:
    """A ``key value`` file (memory.stat, cpu.stat) as a dict; empty when unreadable."""
    found = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                found[key] = int(value)
    except OSError:
        pass
    return found


class Meter:
    """Reads memory and CPU utilisation of the cgroup this process runs in, or of the machine (see the module's
    docstring). ``root`` is the cgroup mount, ``proc`` /proc and ``clock`` the wall time CPU is measured over (a
    test points them at its own)."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.proc = proc
        self.clock = clock
        self.memory_dir, self.usage_file, self.limit_file = self._memory_cgroup()
        self.cpu_dir = self._cpu_cgroup() if self.memory_dir is not None else None
        self._last_cpu: tuple[float, float] | None = None  # (busy seconds or jiffies, wall seconds or jiffies)

    def _controller_paths(self) -> list[tuple[str, str]]:
        """(controllers, path) of each line of /proc/self/cgroup: ("", path) is cgroup v2's."""
        found = []
        try:
            for line in (self.proc / "self" / "cgroup").read_text().splitlines():
                hierarchy, controllers, path = line.split(":", 2)
                found.append(("" if hierarchy == "0" else controllers, path.lstrip("/")))
        except (OSError, ValueError):
            pass
        return found

    def _candidates(self, controller: str) -> list[Path]:
        """Where this process's cgroup of ``controller`` may be: its own (from /proc/self/cgroup; "/" inside a
        container with its own cgroup namespace), then the mount's root (a container's, where libvirt mounts it)."""
        dirs = []
        for controllers, path in self._controller_paths():
            if controllers == "":
                dirs.append(self.root / path)
            elif controller in controllers.split(","):
                dirs += [self.root / controllers / path, self.root / controller / path]
        return [*dirs, self.root, self.root / controller]

    def _memory_cgroup(self) -> tuple[Path | None, str, str]:
        for directory in self._candidates("memory"):
            for usage, limit in (("memory.current", "memory.max"), ("memory.usage_in_bytes", "memory.limit_in_bytes")):
                if _read_int(directory / usage) is not None:
                    if _read_int(directory / limit) is None:
                        return None, "", ""  # no limit: the machine's figures say more
                    return directory, usage, limit
        return None, "", ""

    def _cpu_cgroup(self) -> Path | None:
        own = {c: path for controllers, path in self._controller_paths() if controllers
               for c in controllers.split(",")}
        if own.get("memory") and own.get("cpuacct") == "":
            # cgroup v1 with cpu and cpuacct mounted apart: libvirt puts a container in a cpu cgroup (its quota)
            # but leaves it in the root cpuacct one, the machine's; its own processes' times are read instead
            return None
        for directory in self._candidates("cpuacct"):
            if "usage_usec" in _stat(directory / "cpu.stat") or _read_int(directory / "cpuacct.usage") is not None:
                return directory
        return None

    def memory(self) -> float | None:
        """Memory in use as a fraction of what the host may have."""
        if self.memory_dir is not None:
            usage = _read_int(self.memory_dir / self.usage_file)
            limit = _read_int(self.memory_dir / self.limit_file)
            if usage is None or not limit:
                return None
            stat = _stat(self.memory_dir / "memory.stat")
            cache = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            return max(usage - cache, 0) / limit
        info = _stat_kib(self.proc / "meminfo")
        total, available = info.get("MemTotal"), info.get("MemAvailable")
        if not total or available is None:
            return None
        return max(total - available, 0) / total

    def cpus(self) -> float:
        """The CPUs this process may use: its affinity, or fewer by its cgroup's quota."""
        count = float(len(os.sched_getaffinity(0)))
        quota = self._quota()
        return min(count, quota) if quota else count

    def _quota(self) -> float | None:
        if self.memory_dir is None:
            return None  # not a container
        limit, _, every = (_read_text(self.cpu_dir / "cpu.max") or "").partition(" ") if self.cpu_dir else ("", "", "")
        if limit.isdigit() and every.isdigit() and int(every):  # cgroup v2: "max 100000" is no limit
            return int(limit) / int(every)
        for directory in self._candidates("cpu"):  # cgroup v1: the cpu controller's files
            quota = _read_text(directory / "cpu.cfs_quota_us")
            period = _read_int(directory / "cpu.cfs_period_us")
            if quota is not None and period:
                return int(quota) / period if quota.isdigit() and int(quota) > 0 else None  # -1: no limit
        return None

    def cpu(self) -> float | None:
        """CPU used since the last call, as a fraction of what the host may use; None at the first call."""
        reading = self._cpu_reading()
        if reading is None:
            return None
        last, self._last_cpu = self._last_cpu, reading
        if last is None or reading[1] <= last[1] or reading[0] < last[0]:
            return None
        busy = (reading[0] - last[0]) / (reading[1] - last[1])
        # never above 1: the quota holds over each of the scheduler's periods (0.1 s), and a reading over a second
        # may take in one period's worth more than its share
        return min(1.0, busy / self.cpus() if self.memory_dir is not None else busy)

    def _cpu_reading(self) -> tuple[float, float] | None:
        """(CPU seconds used, wall seconds) of the cgroup, or of the container's processes (its own PID namespace:
        those /proc lists, with what the ones they reaped used); or (busy jiffies, all jiffies) of the machine."""
        if self.cpu_dir is not None:
            usec = _stat(self.cpu_dir / "cpu.stat").get("usage_usec")
            used = usec / 1e6 if usec is not None else None
            if used is None:
                nsec = _read_int(self.cpu_dir / "cpuacct.usage")
                used = nsec / 1e9 if nsec is not None else None
            return None if used is None else (used, self.clock())
        if self.memory_dir is not None:
            return self._processes_time(), self.clock()
        try:
            fields = [int(f) for f in (self.proc / "stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return float(total - idle), float(total)


    def _processes_time(self) -> float:
        """CPU seconds of every process /proc lists (utime, stime, and their reaped children's), as a container
        with its own PID namespace sees them."""
        ticks = 0
        for stat in self.proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
                ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime (fields 14 to 17)
            except (OSError, ValueError):
                continue  # gone meanwhile
        return ticks / os.sysconf("SC_CLK_TCK")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _stat_kib(path: Path) -> dict[str, int]:
    """/proc/meminfo: ``Name:   123 kB`` lines as {name: kB}."""
    found = {}
    try:
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(":")
            number = rest.split()[0] if rest.split() else ""
            if number.isdigit():
                found[name] = int(number)
    except OSError:
        pass
    return found


class Agent:
    """Samples every ``interval`` seconds, keeps the newest sample for pulls, and hands a push to the pusher
    thread when the values moved by more than ``step`` since the last accepted push or ``heartbeat`` passed."""

    def __init__(self, name: str, meter: Meter, *, push: str | None, step: float, heartbeat: float,
                 source: str | None = None, key: bytes | None = None) -> None:
        self.name = name
        #: the domain's key the samples are MACed with (None: no MAC, and crane's receiver believes none of them)
        self.key = key
        self.meter = meter
        self.push_url = push
        #: the address pushes are sent from: the one the agent serves on, which the receiver knows the host by
        self.source = source
        self.step = step
        self.heartbeat = heartbeat
        self.lock = threading.Condition()
        self.sample: dict[str, Any] | None = None
        self.seq = 0
        self.pushed = 0
        self.pending: dict[str, Any] | None = None
        self.last_pushed: dict[str, Any] | None = None  # the last sample the receiver accepted
        self.failing = False
        self.stopping = threading.Event()

    def take_sample(self) -> None:
        memory, cpu = self.meter.memory(), self.meter.cpu()
        with self.lock:
            self.seq += 1
            self.sample = {"host": self.name, "memory": memory, "cpu": cpu, "at": time.time(), "seq": self.seq,
                           "pushed": self.pushed}
            if self.push_url is not None and self._due(self.sample):
                self.pending = self.sample
                self.lock.notify_all()

    def _due(self, sample: dict[str, Any]) -> bool:
        last = self.last_pushed
        if last is None or sample["at"] - last["at"] >= self.heartbeat:
            return True
        return any(_moved(last[key], sample[key], self.step) for key in ("memory", "cpu"))

    def push_forever(self) -> None:
        """The pusher thread: sends the newest pending sample (an older one not yet sent is dropped for it)."""
        assert self.push_url is not None
        while True:
            with self.lock:
                while self.pending is None and not self.stopping.is_set():
                    self.lock.wait()
                if self.stopping.is_set():
                    return
                sample, self.pending = self.pending, None
            assert sample is not None
            problem = self._post(sample)
            if problem is not None:
                if not self.failing:
                    print(f"agent: push to {self.push_url} failed: {problem} (retrying while samples call for it; "
                          "logged once until one succeeds)", file=sys.stderr, flush=True)
                self.failing = True
                continue
            with self.lock:
                self.pushed += 1
                self.last_pushed = sample
            if self.failing:
                print(f"agent: push to {self.push_url} works again", file=sys.stderr, flush=True)
            self.failing = False

    def _post(self, sample: dict[str, Any]) -> str | None:
        """POST ``sample`` to the push URL (directly: never through a proxy); what went wrong, or None."""
        assert self.push_url is not None
        url = urlsplit(self.push_url)
        source = (self.source, 0) if self.source not in (None, "0.0.0.0", "::") else None
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=PUSH_TIMEOUT,
                                          source_address=source)
        body = json.dumps(sample).encode()
        headers = {"Content-Type": "application/json"}
        if self.key is not None:
            headers[MAC_HEADER] = mac(self.key, "push", body)
        try:
            conn.request("POST", url.path or "/", body=body, headers=headers)
            response = conn.getresponse()
            text = response.read(200).decode(errors="replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            return str(exc) or type(exc).__name__
        finally:
            conn.close()
        return None if 200 <= response.status < 300 else f"HTTP {response.status}: {text}"

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            self.lock.notify_all()


def _moved(before: float | None, now: float | None, step: float) -> bool:
    if before is None or now is None:
        return (before is None) != (now is None)
    return abs(now - before) > step


class SampleHandler(BaseHTTPRequestHandler):
    """``GET /sample[?nonce=N]``: the newest sample (503 before the first), MACed with the nonce."""

    server: AgentServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/sample":
            self._reply(404, {"error": f"no page {self.path}; GET /sample"})
            return
        nonce = parse_qs(url.query).get("nonce", [""])[0]
        if len(nonce) > 64 or nonce.strip("0123456789abcdef"):
            self._reply(400, {"error": "a nonce is at most 64 lowercase hex digits"})
            return
        with self.server.agent.lock:
            sample = self.server.agent.sample
        self._reply(200, sample, nonce) if sample is not None else self._reply(503, {"error": "no sample yet"})

    def _reply(self, status: int, body: dict[str, Any], nonce: str = "") -> None:
        data = (json.dumps(body) + "\n").encode()
        key = self.server.agent.key
        self.send_response(status)
        if status == 200 and key is not None:
            self.send_header(MAC_HEADER, mac(key, "pull", data, nonce))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: the controller pulls every few seconds."""


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.agent = agent
        super().__init__(address, SampleHandler)

    def server_bind(self) -> None:
        """Without http.server's reverse lookup of its own address: a container's resolver may be unreachable."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"agent: {message} (see --help)", file=sys.stderr)
        sys.exit(1)


def _number(text: str, what: str, ok: Any) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    return _number(text, "a number of seconds above 0", lambda v: 0 < v < float("inf"))


def _step(text: str) -> float:
    return _number(text, "a fraction of 0 or more", lambda v: 0 <= v < float("inf"))


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port between 1 and 65535, got {text!r}")
    return int(text)


def _push_url(text: str) -> str:
    url = urlsplit(text)
    try:
        url.port  # noqa: B018 - raises on a port that is not one
    except ValueError:
        url = url._replace(netloc="")
    if url.scheme != "http" or not url.hostname:
        raise argparse.ArgumentTypeError(f"must be an http://HOST[:PORT]/PATH URL, got {text!r}")
    return text


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="agent", description="crane's monitoring agent: memory and CPU, pulled and pushed")
    parser.add_argument("--bind", required=True, help="address to serve GET /sample on")
    parser.add_argument("--port", type=_port, required=True)
    parser.add_argument("--push", type=_push_url, help="URL to POST samples to (none: pulls only)")
    parser.add_argument("--name", default=socket.gethostname(), help="the host's name in samples")
    parser.add_argument("--interval", type=_seconds, default=1.0, help="seconds between samples")
    parser.add_argument("--step", type=_step, default=0.05, help="a move that is pushed at once")
    parser.add_argument("--heartbeat", type=_seconds, default=30.0, help="seconds between pushes at the most")
    parser.add_argument("--key-file", help="the domain's key in hex, to MAC the samples with (read at the start)")
    parser.add_argument("--user", help="USER[:GROUP] to run as once the key is read (the agent starts as root)")
    return parser.parse_args(argv)


def read_key(path: str) -> bytes:
    """The key in ``path`` (hex); ``ValueError`` saying why not."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"{path} holds no key (at least 16 bytes in hex)")
    return key


def become(user: str) -> None:
    """Run as ``USER[:GROUP]`` from now on (the user's own group without one); ``ValueError`` when unknown."""
    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwnam(name)
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError:
        raise ValueError(f"no such user or group: {user}") from None
    if os.getuid() == entry.pw_uid:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(entry.pw_uid)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        key = read_key(args.key_file) if args.key_file else None
    except ValueError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    agent = Agent(args.name, Meter(), push=args.push, step=args.step, heartbeat=args.heartbeat, source=args.bind,
                  key=key)
    try:
        server = AgentServer((args.bind, args.port), agent)
    except OSError as exc:
        print(f"agent: cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        if args.user:
            become(args.user)
    except (ValueError, OSError) as exc:
        print(f"agent: cannot run as {args.user}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:  # not in the handler itself: it may interrupt the lock's holder
        threading.Thread(target=agent.stopping.set, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    pusher = threading.Thread(target=agent.push_forever, name="push", daemon=True) if args.push else None
    if pusher is not None:
        pusher.start()
    print(f"agent: {args.name} serving /sample on {args.bind}:{args.port}, pushing to {args.push or 'nowhere'}, "
          f"{'MACing its samples' if key is not None else 'with no key: its samples prove nothing'}",
          file=sys.stderr, flush=True)
    agent.meter.cpu()  # the first reading: CPU is a difference between two
    next_at = time.monotonic() + min(args.interval, 0.25)
    agent.stopping.wait(min(args.interval, 0.25))
    while not agent.stopping.is_set():
        agent.take_sample()
        next_at += args.interval
        agent.stopping.wait(max(0.0, next_at - time.monotonic()))
    agent.stop()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
