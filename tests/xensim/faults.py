"""Fault injection for reliability tests; every method is safe to call from the test's thread while the server runs.

- ``drop_next(method)``: the server closes the connection of the next call of ``method`` without answering. By
  default it drops *before* doing anything; with ``after=True`` the call has taken effect when the connection
  drops (the client cannot tell which). Note that Python's ``xmlrpc.client`` sends a request again once when a
  kept-alive connection is closed under it, so a single drop is usually invisible to SDK users (and a drop
  ``after=True`` then runs the call twice, as on a real network); ``times=2`` makes the client see the error.
  With ``headers_only=True`` the server sends the answer's status and headers and then closes (a master going
  down while it answers): the client reads an empty body, which Python's XML-RPC parser fails on.
- ``fail_tasks(method, error)``: the async tasks of ``method`` end in failure with ``error`` as ``error_info``.
- ``stall_tasks(method)``: its tasks stay pending (progress shown, cancellable) until the handle is released.
- ``expire_sessions()``: every session becomes invalid (``SESSION_INVALID``) as after xapi's session timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


def _matches(pattern: str, method: str) -> bool:
    return method == pattern or method == f"Async.{pattern}"


@dataclass
class _Drop:
    method: str
    after: bool
    times: int
    headers_only: bool = False


class Stall:
    """The handle of a stall: ``release()`` lets the stalled tasks (and later ones) run on; ``waiting`` is how many
    tasks are held now. Also a context manager that releases on exit."""

    def __init__(self, method: str, on_release: Callable[[Stall], None]) -> None:
        self.method = method
        self._event = threading.Event()
        self._on_release = on_release
        self._lock = threading.Lock()
        self.waiting = 0

    def release(self) -> None:
        self._on_release(self)
        self._event.set()

    @property
    def released(self) -> bool:
        return self._event.is_set()

    def hold(self, cancelled: threading.Event) -> None:
        """Block a task until the release or the task's cancellation."""
        with self._lock:
            self.waiting += 1
        try:
            while not self._event.is_set() and not cancelled.is_set():
                self._event.wait(0.01)
        finally:
            with self._lock:
                self.waiting -= 1

    def __enter__(self) -> Stall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Faults:
    def __init__(self, expire: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._drops: list[_Drop] = []
        self._failures: dict[str, list[str]] = {}
        self._stalls: dict[str, Stall] = {}
        self._expire = expire

    def drop_next(self, method: str, *, after: bool = False, times: int = 1, headers_only: bool = False) -> None:
        with self._lock:
            self._drops.append(_Drop(method, after, times, headers_only))

    def take_drop(self, method: str) -> str | None:
        """'before', 'after' or 'headers' (after, with the answer's headers sent) when this call of ``method`` is to
        be dropped (and counts it), else None."""
        with self._lock:
            for drop in self._drops:
                if _matches(drop.method, method):
                    drop.times -= 1
                    if drop.times <= 0:
                        self._drops.remove(drop)
                    return "headers" if drop.headers_only else "after" if drop.after else "before"
        return None

    def fail_tasks(self, method: str, error: list[str]) -> None:
        with self._lock:
            self._failures[method] = list(error)

    def stall_tasks(self, method: str) -> Stall:
        stall = Stall(method, self._forget)
        with self._lock:
            self._stalls[method] = stall
        return stall

    def _forget(self, stall: Stall) -> None:
        with self._lock:
            if self._stalls.get(stall.method) is stall:
                del self._stalls[stall.method]

    def task_failure(self, method: str) -> list[str] | None:
        with self._lock:
            return self._failures.get(method)

    def task_stall(self, method: str) -> Stall | None:
        with self._lock:
            return self._stalls.get(method)

    def expire_sessions(self) -> None:
        self._expire()

    def clear(self) -> None:
        """No more faults: pending drops and failures forgotten, every stall released."""
        with self._lock:
            self._drops.clear()
            self._failures.clear()
            stalls = list(self._stalls.values())
        for stall in stalls:
            stall.release()
