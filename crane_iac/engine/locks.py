"""Breaking a stack's lock on purpose (`crane force-unlock`): only by its ID, never a live holder's by accident."""

from __future__ import annotations

import os
import socket

from crane_iac.errors import LockHeldError, StateError
from crane_iac.state.base import LockInfo, StateStore


def holder_alive(info: LockInfo) -> bool:
    """True when the lock's holder is a process still running on this host (a holder elsewhere cannot be seen)."""
    if info.host != socket.gethostname() or info.pid <= 0:
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def break_lock(store: StateStore, stack: str, lock_id: str, *, force: bool = False) -> LockInfo:
    """Remove the lock ``lock_id`` of ``stack`` and journal who broke it. Refused when the stack holds another lock,
    or when the holder is alive on this host and ``force`` is not given."""
    info = store.lock_info(stack)
    if info is None:
        raise StateError(f"stack {stack!r} is not locked; nothing to unlock")
    if info.id != lock_id:
        raise StateError(f"stack {stack!r} is locked with ID {info.id}, not {lock_id} (held by {info.holder}, "
                         f"{info.operation} since {info.acquired_at}); copy the ID from the 'locked by' message")
    if holder_alive(info) and not force:
        raise LockHeldError(f"stack {stack!r} is locked by {info.holder}, which is still running on this host "
                            f"({info.operation} since {info.acquired_at}); breaking its lock could let two runs "
                            "change the same objects. Wait for it, stop it, or pass --force if you are sure")
    by = f"{os.environ.get('USER') or os.getuid()}@{socket.gethostname()} pid {os.getpid()}"
    return store.break_lock(stack, lock_id, by)
