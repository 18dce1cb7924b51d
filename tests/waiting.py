"""The one way tests wait for something another process or thread does: poll a predicate until it holds, with a
timeout that only bounds a failure (a passing test never waits it out) and a message naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *, every: float = 0.05,
               detail: Callable[[], object] | None = None) -> T:
    """``predicate()`` once it is true (polled every ``every`` seconds); after ``timeout`` seconds an AssertionError
    saying that ``what`` did not happen, with ``detail()`` (a log, the last value seen) when given. A predicate may
    itself raise to end the wait early (the process it waits on exited)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"{what}: not within {timeout:g} s{extra}")
        time.sleep(every)
    return value
