"""Failpoints for crash tests: ``CRANE_FAILPOINT=name[:n]`` SIGKILLs crane the n-th time it reaches ``name``.
Several, comma-separated, all hold (``slow:0.2,after-commit``: batches that are sure to be several, then a kill).

``CRANE_FAILPOINT=slow:<seconds>`` makes every provider step take that much longer (for tests of interrupts).

``CRANE_FAILPOINT=refuse:<address>`` instead makes the provider call for that resource fail as a refused call
would (for tests of how apply goes on around a failure the plan could not foresee).

Points: ``after-intents`` (intents recorded, nothing done), ``after-mutation`` (a provider
call returned, nothing durable yet), ``after-checkpoint`` (the hypervisor has it, state
does not), ``after-commit`` (a batch is recorded, the rest is not). The autoscaler's: ``autoscale-decided`` (a
period decided, nothing written), ``autoscale-chosen`` (a scale-in's members written with the chosen servers last),
``autoscale-resized`` (the size written, with the decision's memory), ``autoscale-members`` (the members that stay
written), ``autoscale-applying`` (all written, the apply not begun). The job pipeline's: ``job-after-<step>``
(``job-after-upload``: that step of `crane job run` recorded as done, the next not begun). Unset, it costs one
dictionary lookup per point.

With ``CRANE_FAILPOINT_PAUSE=<file>`` as well, crane does not kill itself at the point: it writes its pid to that
file and waits there to be killed from outside (a test that SIGKILLs from another process knows, by the file, that
the apply is where it meant, whatever the machine's speed); the other apply threads go on meanwhile.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from crane_iac.errors import ProviderError

_counts: dict[str, int] = {}
_lock = threading.Lock()


def hit(name: str) -> None:
    spec = os.environ.get("CRANE_FAILPOINT")
    if not spec:
        return
    nth = next((n for point, _, n in (s.partition(":") for s in spec.split(",")) if point == name), None)
    if nth is None:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] < int(nth or 1):
            return
        marker = os.environ.get("CRANE_FAILPOINT_PAUSE")
        if not marker:
            os.kill(os.getpid(), signal.SIGKILL)
            return
        _counts[name] = -(1 << 30)  # one pause: later passes go on
    partial = f"{marker}.partial"
    with open(partial, "w") as out:
        out.write(f"{os.getpid()}\n")
    os.replace(partial, marker)  # whole or absent: the test reads a pid once the file is there
    threading.Event().wait()  # until the SIGKILL


def before_step(address: str) -> None:
    """Called before each provider step: with ``CRANE_FAILPOINT=slow:<seconds>`` wait that long; raise a provider
    refusal when ``CRANE_FAILPOINT=refuse:<address>`` names this resource."""
    specs = os.environ.get("CRANE_FAILPOINT")
    if not specs:
        return
    for spec in specs.split(","):
        if spec.startswith("slow:"):
            time.sleep(float(spec.removeprefix("slow:")))
        if spec == f"refuse:{address}":
            raise ProviderError(f"the provider call for {address} was refused by CRANE_FAILPOINT")
