#!/usr/bin/python3
"""Makes a running HAProxy's backend hold exactly the given web servers, through its admin socket, without a reload.

Runs in the load balancer's container with the system Python 3 and its standard library only. New servers are added
first (``add server``, ``enable health``, ``enable server``), so capacity never dips; servers to remove are drained
(no new requests), waited for until they have no sessions (or the drain timeout, after which their sessions are
shut), put in maintenance and deleted. A server whose address or port changed gets the new one; one left drained or
in maintenance by an interrupted run is made ready. Last, the servers' states are written to the state file
HAProxy loads on a reload (``server-state-file``). Running it again with the same list changes nothing but that
file, so it also serves to save the states before a reload.

    python3 haproxy_servers.py --socket /run/haproxy/admin.sock --backend web \\
        --state-file /run/haproxy/servers.state --servers '[{"name": "web-1", "address": "10.0.0.6", "port": 8000}]'

Prints a JSON summary ({"added": [...], "removed": [...], "updated": [...], "unchanged": [...], ...}) and exits 0;
on failure prints the reason on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import os
import re
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass

#: the options of every server line crane renders (crane_iac.appdomain.haproxy.SERVER_OPTIONS); a test keeps
#: the two equal
SERVER_OPTIONS = ("check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 "
                  "observe layer4 error-limit 1 on-error fastinter")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
#: srv_admin_state bits of "show servers state" that mean the server takes no new requests
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, set by DNS/config maintenance
_ADMIN_DRAIN = 0x08 | 0x10


class SyncError(Exception):
    """HAProxy refused a command or could not be reached; the message says which and what it answered."""


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Running:
    """A server as ``show servers state`` reports it."""

    server: Server
    admin_state: int

    @property
    def ready(self) -> bool:
        return not self.admin_state & (_ADMIN_MAINT | _ADMIN_DRAIN)


class RuntimeAPI:
    """HAProxy's admin socket: one command per connection, its whole answer returned."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise SyncError(f"cannot talk to HAProxy's admin socket {self.path} ({exc}); is haproxy running with "
                            "'stats socket ... level admin' there?") from None
        return b"".join(chunks).decode(errors="replace")

    def expect(self, line: str, *, answer: str = "") -> str:
        """Run ``line``; a SyncError unless HAProxy answers ``answer`` (most commands answer nothing)."""
        out = self.command(line).strip()
        if out != answer and not (answer and out.startswith(answer)):
            raise SyncError(f"HAProxy refused {line!r}: {out or '(no answer)'}")
        return out


def running_servers(api: RuntimeAPI, backend: str) -> dict[str, Running]:
    """The backend's servers now, by name."""
    out = api.command(f"show servers state {backend}")
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise SyncError(f"HAProxy has no backend {backend!r} (show servers state: {out.strip() or '(no answer)'})")
    found = {}
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        f = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port (18)
        server = Server(f[3], f[4], int(f[18]))
        found[server.name] = Running(server, int(f[6]))
    return found


def busy_servers(api: RuntimeAPI, backend: str, names: set[str]) -> dict[str, str]:
    """Of ``names``, those with current sessions, queued requests or connections in use, and what they have."""
    busy: dict[str, str] = {}
    for row in csv.DictReader(api.command("show stat").lstrip("# ").splitlines()):
        if row.get("pxname") == backend and row.get("svname") in names:
            sessions, queued = int(row.get("scur") or 0), int(row.get("qcur") or 0)
            if sessions or queued:
                busy[row["svname"]] = f"{sessions} sessions, {queued} queued"
    for line in api.command(f"show servers conn {backend}").splitlines():
        f = line.split()
        if len(f) > 6 and not line.startswith("#") and "/" in f[0]:
            name = f[0].split("/", 1)[1]
            if name in names and f[6].isdigit() and int(f[6]) > 0:
                busy[name] = busy.get(name, "") + f" {f[6]} connections in use".rstrip()
    return busy


@dataclass(frozen=True)
class Readiness:
    """How a server proves it can take requests before it joins: ``GET path`` answered 200 within ``timeout`` s
    (no path: it joins at once, as HAProxy would take it)."""

    path: str | None = None
    timeout: float = 60.0


def wait_ready(server: Server, ready: Readiness) -> None:
    """Until the server answers ``GET ready.path`` with 200; a SyncError when it has not within the timeout."""
    if ready.path is None:
        return
    url = f"http://{server.endpoint}{ready.path}"
    deadline = time.monotonic() + ready.timeout
    why = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                why = f"answered {response.status}"
        except (OSError, ValueError) as exc:
            why = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise SyncError(f"{server.name} did not answer GET {ready.path} with 200 within {ready.timeout:.0f} s "
                            f"({why}); it stays out of the pool (in maintenance) until it does")
        time.sleep(0.1)


def wait_up(api: RuntimeAPI, backend: str, names: set[str], ready: Readiness) -> None:
    """With a readiness check, until HAProxy has every one of ``names`` UP (a server it has just started with, or
    reloaded, is checked before it is trusted); a SyncError names those that are not within the timeout."""
    if ready.path is None or not names:
        return
    deadline = time.monotonic() + ready.timeout
    while True:
        status = {row["svname"]: row.get("status", "") for row in
                  csv.DictReader(api.command("show stat").lstrip("# ").splitlines())
                  if row.get("pxname") == backend and row.get("svname") in names}
        # "no check": a server HAProxy does not check is in as soon as it is enabled
        down = sorted(name for name in names if not status.get(name, "").startswith(("UP", "no check")))
        if not down:
            return
        if time.monotonic() >= deadline:
            raise SyncError(f"not up after {ready.timeout:.0f} s: " + ", ".join(f"{n} ({status.get(n, 'absent')})"
                                                                           for n in down))
        time.sleep(0.1)


def add(api: RuntimeAPI, backend: str, server: Server, options: str, ready: Readiness = Readiness()) -> None:
    """Add a server (HAProxy adds it in maintenance), check it, and let it take requests once it is ready."""
    api.expect(f"add server {backend}/{server.name} {server.endpoint} {options}".strip(),
               answer="New server registered.")
    if re.search(r"(^|\s)check(\s|$)", options):
        api.expect(f"enable health {backend}/{server.name}")
    wait_ready(server, ready)
    api.expect(f"enable server {backend}/{server.name}")


def remove(api: RuntimeAPI, backend: str, names: list[str], drain_timeout: float) -> list[str]:
    """Drain, then delete ``names``; returns those whose sessions were still open at the timeout and were shut."""
    for name in names:
        api.expect(f"set server {backend}/{name} state drain")
    deadline = time.monotonic() + drain_timeout
    while (busy := busy_servers(api, backend, set(names))) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in names:
        api.expect(f"set server {backend}/{name} state maint")
    for name in busy:
        api.expect(f"shutdown sessions server {backend}/{name}")
    for name in names:
        # after maintenance the last connections close within moments; HAProxy refuses until they have
        for attempt in range(50):
            out = api.command(f"del server {backend}/{name}").strip()
            if out.startswith("Server deleted."):
                break
            if attempt == 49 or "connection" not in out.lower():
                raise SyncError(f"HAProxy refused to delete {backend}/{name}: {out or '(no answer)'}")
            time.sleep(0.1)
    return sorted(busy)


def save_state(api: RuntimeAPI, path: str) -> None:
    """``show servers state`` into ``path``, atomically (HAProxy may read it at any moment)."""
    state = api.command("show servers state")
    if not state.lstrip().startswith("1"):
        raise SyncError(f"show servers state answered: {state.strip() or '(no answer)'}")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as out:
            out.write(state.lstrip("\n"))
        os.replace(tmp, path)
    except OSError as exc:
        raise SyncError(f"cannot write the state file {path}: {exc}") from None


def sync(api: RuntimeAPI, backend: str, desired: list[Server], *, options: str, state_file: str,
         drain_timeout: float, ready: Readiness = Readiness()) -> dict[str, object]:
    running = running_servers(api, backend)
    wanted = {s.name: s for s in desired}
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for server in desired:
        now = running.get(server.name)
        if now is None:
            add(api, backend, server, options, ready)
            added.append(server.name)
            continue
        changed = False
        if (ipaddress.ip_address(now.server.address), now.server.port) != (ipaddress.ip_address(server.address),
                                                                             server.port):
            line = f"set server {backend}/{server.name} addr {server.address} port {server.port}"
            out = api.command(line).strip()
            if "changed from" not in out:  # "IP changed from ..., port changed from ..." or "no need to change ..."
                raise SyncError(f"HAProxy refused {line!r}: {out or '(no answer)'}")
            changed = True
        if not now.ready:
            wait_ready(server, ready)
            api.expect(f"set server {backend}/{server.name} state ready")
            changed = True
        (updated if changed else unchanged).append(server.name)
    removed = [name for name in running if name not in wanted]
    forced = remove(api, backend, removed, drain_timeout) if removed else []
    wait_up(api, backend, set(wanted), ready)
    save_state(api, state_file)
    return {"backend": backend, "added": added, "removed": removed, "updated": updated, "unchanged": unchanged,
            "forced": forced, "servers": sorted(wanted), "state_file": state_file}


def parse_servers(text: str) -> list[Server]:
    """The --servers JSON: a list of {"name", "address", "port"}; a SyncError says what is wrong with it."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SyncError(f"--servers is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise SyncError("--servers must be a JSON list of {\"name\", \"address\", \"port\"}")
    servers: list[Server] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"name", "address", "port"}:
            raise SyncError(f"--servers[{i}] must be an object with exactly name, address and port: {item!r}")
        name, address, port = item["name"], item["address"], item["port"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise SyncError(f"--servers[{i}]: name {name!r} must be letters, digits, '_', '.', ':' or '-'")
        try:
            ipaddress.ip_address(address)
        except (ValueError, TypeError):
            raise SyncError(f"--servers[{i}] ({name}): address {address!r} is not an IP address") from None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise SyncError(f"--servers[{i}] ({name}): port {port!r} is not between 1 and 65535")
        if any(s.name == name for s in servers):
            raise SyncError(f"--servers: the name {name!r} is used twice")
        servers.append(Server(name, address, port))
    return servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, help="HAProxy's admin socket (stats socket ... level admin)")
    parser.add_argument("--backend", required=True, help="the backend whose servers to set")
    parser.add_argument("--state-file", required=True, help="HAProxy's server-state-file, rewritten at the end")
    parser.add_argument("--servers", required=True, help='JSON: [{"name": ..., "address": ..., "port": ...}]')
    parser.add_argument("--server-options", default=SERVER_OPTIONS, help="options of added servers (as in the file)")
    parser.add_argument("--ready-path", default=None,
                        help="a new server joins once it answers GET PATH with 200 (default: at once)")
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds a new server has to answer --ready-path")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait for a removed server's sessions to end before shutting them")
    args = parser.parse_args(argv)
    try:
        summary = sync(RuntimeAPI(args.socket), args.backend, parse_servers(args.servers),
                       options=args.server_options, state_file=args.state_file, drain_timeout=args.drain_timeout,
                       ready=Readiness(args.ready_path or None, args.ready_timeout))
    except SyncError as exc:
        print(f"haproxy_servers: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
