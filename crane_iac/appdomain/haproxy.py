"""The app domain's load balancer: its HAProxy configuration, rendered from the domain's web servers.

Rendering is pure (names and numbers in, text out). The backend is written so that servers can also be added
and removed at runtime through the admin socket (files/haproxy_servers.py) without a reload: its balancing
algorithm is a dynamic one, and every server line carries its options itself (HAProxy ignores ``default-server``
for servers added at runtime), so a server added at runtime and the same server written in the file behave alike.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

#: the backend of web servers; files/haproxy_servers.py is told its name with --backend
BACKEND = "web"

#: every server's options, in the file and in ``add server`` (files/haproxy_servers.py has the same default):
#: checked every second, out after two failed checks (a refused or reset connection to it also brings the next
#: check forward), back after two good ones
SERVER_OPTIONS = ("check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 "
                  "observe layer4 error-limit 1 on-error fastinter")

#: HAProxy 2.6's balancing algorithms that allow servers added at runtime (``add server`` refuses a backend
#: with a static one): the hash-based ones only with ``hash-type consistent``, which the template then writes.
#: Each maps to the pattern of its arguments.
_DYNAMIC = {"roundrobin": "", "leastconn": "", "first": "", "random": r"(\(\d+\))?"}
_HASHED = {"source": "", "uri": r"( (whole|len \d+|depth \d+|path-only))*", "url_param": r" [\w.-]+",
           "hdr": r"\([\w-]+\)", "rdp-cookie": r"(\([\w-]+\))?"}
#: in HAProxy 2.6 but refused here: no servers can be added to a static-rr backend at runtime
_STATIC = {"static-rr"}
BALANCE_ALGORITHMS = frozenset((_DYNAMIC | _HASHED).keys())

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_PATH = re.compile(r"^/[!-~]*$")
_DURATION = re.compile(r"^\d+(us|ms|s|m|h|d)?$")


@dataclass(frozen=True, slots=True)
class Server:
    """One web server of the backend: its stable name (the web host's name) and where it listens."""

    name: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        """``address:port`` as HAProxy writes it (an IPv6 address in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """HAProxy's timeouts (HAProxy durations: ``2s``, ``500ms``, ``1m``)."""

    connect: str = "2s"
    client: str = "30s"
    server: str = "30s"
    http_request: str = "10s"
    queue: str = "10s"
    check: str = "1s"


def balance_line(balance: str) -> list[str]:
    """The backend's balancing lines for ``balance`` (``roundrobin``, ``url_param session``, ``hdr(host)``…);
    a ValueError names the choices when HAProxy would not take it or could not add servers at runtime with it."""
    word = re.split(r"[ (]", balance.strip(), maxsplit=1)[0]
    if word in _STATIC:
        raise ValueError(f"balance {balance!r} cannot take web servers added at runtime (HAProxy allows that only "
                         f"with a dynamic algorithm); choose one of {', '.join(sorted(BALANCE_ALGORITHMS))}")
    arguments = _DYNAMIC.get(word, _HASHED.get(word))
    if arguments is None or not re.fullmatch(re.escape(word) + arguments, balance.strip()):
        raise ValueError(f"unknown balance {balance!r}: choose one of {', '.join(sorted(BALANCE_ALGORITHMS))}")
    lines = [f"balance {balance.strip()}"]
    if word in _HASHED:
        lines.append("hash-type consistent")
    return lines


def _check_name(what: str, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"{what} {value!r} must be letters, digits, '_', '.', ':' or '-'")


def _check_servers(servers: list[Server]) -> None:
    seen: set[str] = set()
    for server in servers:
        _check_name("server name", server.name)
        if server.name in seen:
            raise ValueError(f"server name {server.name!r} is used twice")
        seen.add(server.name)
        try:
            ipaddress.ip_address(server.address)
        except ValueError:
            raise ValueError(f"server {server.name!r}: address {server.address!r} is not an IP address (HAProxy "
                             "does not resolve names of servers added at runtime)") from None
        if not 0 < server.port < 65536:
            raise ValueError(f"server {server.name!r}: port {server.port} is not between 1 and 65535")


@cache
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("crane_iac.appdomain", "templates"),
        auto_reload=False,
        autoescape=False,  # every value is validated above: names, addresses, numbers, a path without spaces
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_haproxy(domain: str, *, bind: str, port: int, servers: list[Server], runtime_socket: str,
                   state_file: str, balance: str = "roundrobin", health_check: str = "/healthz",
                   retries: int = 3, stats_port: int | None = None, timeouts: Timeouts = Timeouts()) -> str:
    """haproxy.cfg for app domain ``domain``: a frontend on ``bind:port`` in front of ``servers``, health-checked
    with ``GET health_check``; the admin socket at ``runtime_socket`` (a local UNIX socket) and the servers' states
    kept across reloads in ``state_file``; with ``stats_port``, a stats page and /healthz of the balancer itself.
    A ValueError says which argument HAProxy or runtime changes would not accept."""
    _check_name("domain", domain)
    if not bind or any(c.isspace() for c in bind):
        raise ValueError(f"bind address {bind!r} must be one word")
    for what, value in (("port", port), ("stats_port", stats_port)):
        if value is not None and not 0 < value < 65536:
            raise ValueError(f"{what} {value} is not between 1 and 65535")
    if not _PATH.match(health_check):
        raise ValueError(f"health check {health_check!r} must be a path starting with '/' without spaces")
    for what, path in (("runtime socket", runtime_socket), ("state file", state_file)):
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"{what} {path!r} must be an absolute path without spaces")
    for name in Timeouts.__dataclass_fields__:
        if not _DURATION.match(getattr(timeouts, name)):
            raise ValueError(f"timeout {name} {getattr(timeouts, name)!r} is not an HAProxy duration")
    if retries < 0:
        raise ValueError(f"retries {retries} must not be negative")
    _check_servers(servers)
    if ":" in bind and not bind.startswith("["):
        bind = f"[{bind}]"  # an IPv6 address
    return _templates().get_template("haproxy.cfg.j2").render(
        domain=domain, bind=bind, port=port, servers=servers, runtime_socket=runtime_socket, state_file=state_file,
        balance=balance_line(balance), health_check=health_check, retries=retries, stats_port=stats_port,
        timeouts=timeouts, backend=BACKEND, server_options=SERVER_OPTIONS)
