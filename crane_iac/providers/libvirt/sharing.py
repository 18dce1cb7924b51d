"""Which kinds two libvirt endpoints share, from their URIs alone (the registry's ``shared_kinds``: no connection).

libvirtd runs each hypervisor driver (``qemu``, ``lxc``, ...) beside one network driver and one storage driver
that every driver of that daemon uses: a network or a storage pool (and the volumes in it) defined through
``qemu:///system`` is there, by its name, through ``lxc:///system``. Domains are each driver's own. So two endpoints
on one daemon (same transport, user, host, port and socket, and the same ``/system`` or ``/session`` path) share
``network``, ``pool``, ``volume``, ``snapshot`` and ``cloudinit`` (a seed and a snapshot are volumes), and two
endpoints that are one driver of one daemon twice share every kind. ``/system`` and ``/session`` are two daemons;
``qemu:///embed`` runs in the client, and shares nothing.

libvirt's test driver runs in the client's process: ``test:///default`` is one hypervisor for every connection of
a process (crane opens every endpoint in one process), so two endpoints on it share every kind; a ``test://FILE``
connection loads its own copy of the file, and a sandbox (no ``uri``) is its endpoint's own: they share nothing.

The rule errs on the side of sharing nothing (``qemu+ssh://admin@h/system`` and ``lxc+ssh://root@h/system`` reach
one daemon, but the users differ): a reference it refuses is a clear load error, while a daemon it took for shared
and is not would fail at apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: every kind the libvirt provider serves
KINDS = ("pool", "network", "volume", "snapshot", "cloudinit", "vm", "container")
#: what every hypervisor driver of one daemon reaches through its shared network and storage drivers
DAEMON_SHARED = frozenset({"network", "pool", "volume", "snapshot", "cloudinit"})
#: the hypervisor drivers libvirtd hosts (a client-side driver, such as esx, has no daemon of its own)
DAEMON_DRIVERS = frozenset({"qemu", "lxc", "libxl", "xen", "ch", "bhyve", "vz"})
#: the daemons' paths: the system-wide one and the user's own
DAEMON_PATHS = frozenset({"/system", "/session"})


def shared_kinds(a: Mapping[str, Any], b: Mapping[str, Any]) -> frozenset[str]:
    """The kinds an object of which, made through the endpoint with settings ``a``, is there by name through the
    endpoint with settings ``b`` (each endpoint's crane.toml keys: ``uri`` and the type's own)."""
    first, second = _daemon(a.get("uri")), _daemon(b.get("uri"))
    if first is None or second is None or first[1] != second[1]:
        return frozenset()
    return frozenset(KINDS) if first[0] == second[0] else DAEMON_SHARED


def _daemon(uri: Any) -> tuple[str, tuple[str, ...]] | None:
    """(the driver, what names its daemon) for a URI whose objects another endpoint may see; None for a sandbox, a
    test driver of its own, an embedded driver, or a URI this rule does not know."""
    if not isinstance(uri, str) or not uri:
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    driver, _, transport = parts.scheme.lower().partition("+")
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/") or "/"
    if driver == "test":
        # one in-process hypervisor per process: only test:///default is shared by the connections opening it
        return (driver, ("test", "default")) if not host and not transport and path == "/default" else None
    if driver not in DAEMON_DRIVERS or path not in DAEMON_PATHS:
        return None
    transport = transport or ("tls" if host else "unix")
    socket = ",".join(parse_qs(parts.query).get("socket", []))
    return driver, (transport, parts.username or "", host, str(port or ""), path, socket)
