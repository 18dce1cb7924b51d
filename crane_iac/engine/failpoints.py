"""Failpoints for crash tests: ``CRANE_FAILPOINT=name[:n]`` SIGKILLs crane the n-th time it reaches ``name``.

``CRANE_FAILPOINT=slow:<seconds>`` makes every provider step take that much longer (for tests of interrupts).

``CRANE_FAILPOINT=refuse:<address>`` instead makes the provider call for that resource fail as a refused call
would (for tests of how apply goes on around a failure the plan could not foresee).

Points: ``after-intents`` (intents recorded, nothing done), ``after-mutation`` (a provider
call returned, nothing durable yet), ``after-checkpoint`` (the hypervisor has it, state
does not), ``after-commit`` (a batch is recorded, the rest is not). Unset, it costs one
dictionary lookup per point.
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
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def before_step(address: str) -> None:
    """Called before each provider step: with ``CRANE_FAILPOINT=slow:<seconds>`` wait that long; raise a provider
    refusal when ``CRANE_FAILPOINT=refuse:<address>`` names this resource."""
    spec = os.environ.get("CRANE_FAILPOINT")
    if spec and spec.startswith("slow:"):
        time.sleep(float(spec.removeprefix("slow:")))
    if spec and spec == f"refuse:{address}":
        raise ProviderError(f"the provider call for {address} was refused by CRANE_FAILPOINT")
