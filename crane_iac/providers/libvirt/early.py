"""Connections opened before the command knows it wants them.

Opening a big sandbox is seconds of libvirt's C code with the GIL free, and a plan spends its first 0.3–0.5 s
importing typer and pydantic and reading crane.toml before it asks for the connection. ``crane_iac.early`` guesses
from the command line and crane.toml which node file a read-only command will open and starts opening it here at
once; the sandbox host takes the connection if its URI is the one it would open (``take``), and otherwise opens its
own. A guess that was wrong costs a connection closed at the end of the command (``discard``), never a different
one: nothing but an exact URI match hands a connection over.
"""

from __future__ import annotations

import threading
from typing import Any

from crane_iac.providers.libvirt.host import connect

_opening: dict[str, tuple[threading.Thread, list[Any]]] = {}


def start(uri: str) -> None:
    """Start opening ``uri`` on a thread of its own (once per URI)."""
    if uri in _opening:
        return
    opened: list[Any] = []

    def run() -> None:
        try:
            opened.append(connect(uri))
        except Exception:  # the host's own open reports the refusal, naming the endpoint
            pass

    thread = threading.Thread(target=run, name="crane-early-open", daemon=True)
    _opening[uri] = (thread, opened)
    thread.start()


def take(uri: str) -> Any | None:
    """The connection to ``uri`` opened early (waiting for it), or None: none was started, or it failed."""
    entry = _opening.pop(uri, None)
    if entry is None:
        return None
    thread, opened = entry
    thread.join()
    return opened[0] if opened else None


def started() -> list[str]:
    """The URIs opened early and not taken yet."""
    return list(_opening)


def discard() -> None:
    """Close what was opened early and not taken (waiting for an open under way: a thread left inside libvirt's C
    code while the interpreter exits could crash it)."""
    while _opening:
        conn = take(next(iter(_opening)))
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing what nobody used; nothing to report
                pass
