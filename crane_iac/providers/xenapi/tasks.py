"""Long calls through their ``Async.`` variants: the pool runs each as a task, crane polls it until it ends, reports
its progress (to the apply's step that called it, ``reporting``, and to the log), takes its result and destroys
it. At most ``max_tasks`` run at once (the engine's threads wait for a slot), so creating 200 VMs keeps the pool
as busy as the endpoint allows and no busier."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.providers.xenapi.session import Connection, XenApiError

log = logging.getLogger(__name__)
_VALUE = re.compile(r"<value>(.*)</value>", re.S)
#: polling intervals: quick at first (a start takes a second), then every second
_FIRST_POLL, _LONGEST_POLL = 0.05, 1.0


def task_result(text: str) -> str:
    """A task's ``result``: XML-RPC's ``<value>OpaqueRef:…</value>`` around the returned value (empty for void)."""
    match = _VALUE.search(text or "")
    return match.group(1).strip() if match else (text or "").strip()


class Tasks:
    """Runs ``Async.`` calls, ``limit`` at a time."""

    def __init__(self, conn: Connection, *, limit: int, timeout: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn = conn
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(limit)
        self._clock, self._sleep = clock, sleep
        #: the most tasks that ran at once (the bench reads it)
        self.peak = 0
        self._running = 0
        self._count = threading.Lock()
        self._local = threading.local()  # the progress note of the step this thread runs

    @contextmanager
    def reporting(self, progress: Callable[[str], None]) -> Iterator[None]:
        """Report the progress of the tasks this thread runs meanwhile to ``progress`` (a request's)."""
        self._local.progress = progress
        try:
            yield
        finally:
            self._local.progress = None

    def _note(self, text: str) -> None:
        progress = getattr(self._local, "progress", None)
        if progress is not None:
            progress(text)

    def run(self, method: str, *args: Any, what: str, timeout: float | None = None) -> str:
        """``Async.<method>(*args)`` followed to its end; its result (a reference, or "" for a void call). A failed
        task is an ``XenApiError`` with the pool's error; one that outlasts ``timeout`` is cancelled."""
        with self._slots:
            with self._count:
                self._running += 1
                self.peak = max(self.peak, self._running)
            try:
                task = self.conn.call(f"Async.{method}", *args)
                try:
                    return self._follow(task, method, what, self.timeout if timeout is None else timeout)
                finally:
                    try:
                        self.conn.call("task.destroy", task)
                    except ProviderError:
                        pass  # the pool forgets finished tasks itself after a while
            finally:
                with self._count:
                    self._running -= 1

    def _follow(self, task: str, method: str, what: str, timeout: float) -> str:
        deadline = self._clock() + timeout
        delay, reported = _FIRST_POLL, -1
        while True:
            record = self.conn.call("task.get_record", task)
            status = record["status"]
            if status == "success":
                log.info("%s: %s done", what, method)
                self._note(f"{method} done")
                return task_result(record.get("result", ""))
            if status in ("failure", "cancelled"):
                details = list(record.get("error_info") or []) or ["TASK_CANCELLED"]
                raise XenApiError(method, details)
            progress = int(float(record.get("progress") or 0) * 100)
            if progress // 10 != reported // 10:
                log.info("%s: %s %d%%", what, method, progress)
                self._note(f"{method} {progress}%")
                reported = progress
            if self._clock() > deadline:
                try:
                    self.conn.call("task.cancel", task)
                except ProviderError:
                    pass
                raise ProviderError(f"{what}: {method} did not finish within {timeout:g} s; crane cancelled it")
            self._sleep(delay)
            delay = min(delay * 2, _LONGEST_POLL)
