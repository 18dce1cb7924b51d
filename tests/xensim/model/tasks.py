"""Tasks: what an ``Async.`` call returns, and the workers that run them.

An async call is checked (session, argument count and types, refs) when it arrives, then answered at once with a
new task's ref; the work runs on one of ``PoolSpec.task_workers`` threads. A task is ``pending`` with
``progress`` 0.0, then 0.5 half-way through ``PoolSpec.task_duration``, and ends ``success`` (``result`` the
XML-RPC value as xapi writes it, ``<value>OpaqueRef:...</value>``; empty for a void call), ``failure``
(``error_info`` the xapi error) or, after ``task.cancel`` while pending, ``cancelled`` (``error_info``
``["TASK_CANCELLED", task]``). The work itself happens in one atomic step at the end, so a cancelled task has done
nothing. Tasks are kept until ``task.destroy``; cancelling a task that has finished is ``OPERATION_NOT_ALLOWED``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from tests.xensim import spec
from tests.xensim.errors import XenError
from tests.xensim.registry import Handler, message

if TYPE_CHECKING:
    from tests.xensim.world import World


def xml_value(value: Any) -> str:
    """A result as xapi writes it into ``task.result``: an XML-RPC ``<value>`` (strings bare)."""
    if isinstance(value, str):
        return f"<value>{escape(value)}</value>"
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, float):
        return f"<value><double>{value!r}</double></value>"
    if isinstance(value, list):
        return "<value><array><data>" + "".join(xml_value(v) for v in value) + "</data></array></value>"
    if isinstance(value, dict):
        members = "".join(f"<member><name>{escape(str(k))}</name>{xml_value(v)}</member>"
                          for k, v in value.items())
        return f"<value><struct>{members}</struct></value>"
    return f"<value>{escape(str(value))}</value>"


class TaskRunner:
    def __init__(self, world: World) -> None:
        self._world = world
        self._pool = ThreadPoolExecutor(max_workers=world.config.task_workers, thread_name_prefix="xensim-task")
        self._cancel: dict[str, threading.Event] = {}

    def submit(self, method: str, handler: Handler, args: list[Any], result_type: str, session: str) -> str:
        w = self._world
        ref = w.store.create("task", name_label=method, status="pending", progress=0.0, created=spec.now_stamp(),
                             allowed_operations=["cancel"], resident_on=w.master)
        self._cancel[ref] = threading.Event()
        self._pool.submit(self._run, ref, method.removeprefix("Async."), handler, args, result_type)
        return ref

    def cancel(self, ref: str) -> None:
        task = self._world.store.get("task", ref)
        if task["status"] != "pending" or ref not in self._cancel:
            raise XenError("OPERATION_NOT_ALLOWED", f"task {ref} is {task['status']}, not pending")
        task["status"] = "cancelling"
        self._cancel[ref].set()

    def _set(self, ref: str, **values: Any) -> bool:
        with self._world.store.lock:
            if not self._world.store.exists("task", ref):
                return False
            self._world.store.get("task", ref).update(values)
            return True

    def _finish(self, ref: str, status: str, **values: Any) -> None:
        self._set(ref, status=status, progress=1.0, finished=spec.now_stamp(), allowed_operations=[], **values)
        self._cancel.pop(ref, None)

    def _run(self, ref: str, name: str, handler: Handler, args: list[Any], result_type: str) -> None:
        w = self._world
        cancelled = self._cancel[ref]
        half = w.config.task_duration / 2
        cancelled.wait(half)
        self._set(ref, progress=0.5)
        stall = w.faults.task_stall(name)
        if stall is not None:
            stall.hold(cancelled)
        cancelled.wait(half)
        with w.store.lock:
            if cancelled.is_set():
                self._finish(ref, "cancelled", error_info=["TASK_CANCELLED", ref])
                return
            failure = w.faults.task_failure(name)
            if failure is not None:
                w.stats.failed(f"Async.{name}", failure[0])
                self._finish(ref, "failure", error_info=failure)
                return
            try:
                value = handler.fn(w, *args)
            except XenError as e:
                w.stats.failed(f"Async.{name}", e.code)
                self._finish(ref, "failure", error_info=e.description)
                return
            except Exception as e:  # a simulator bug: say so as xapi would, not hang the client
                w.stats.failed(f"Async.{name}", "INTERNAL_ERROR")
                self._finish(ref, "failure", error_info=["INTERNAL_ERROR", repr(e)])
                return
            result = "" if result_type == "void" else xml_value(spec.encode(result_type, value))
            self._finish(ref, "success", result=result)

    def shutdown(self) -> None:
        for event in list(self._cancel.values()):
            event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)


@message("task.cancel")
def cancel(w: World, session: str, task: str) -> None:
    w.tasks.cancel(task)


@message("task.destroy")
def destroy(w: World, session: str, task: str) -> None:
    w.store.destroy("task", task)
