"""Breaking a stack's lock on purpose (`crane force-unlock`): only by its ID, never a live holder's by accident."""

from __future__ import annotations

from crane_iac.errors import LockHeldError
from crane_iac.state.base import LockInfo, StateStore, this_process


def break_lock(store: StateStore, stack: str, lock_id: str, *, force: bool = False) -> LockInfo:
    """Remove the lock ``lock_id`` of ``stack`` and journal who broke it. Refused when the holder is alive on this
    host and ``force`` is not given; the store refuses a stack that is not locked, or locked with another ID."""
    info = store.lock_info(stack)
    if info is not None and info.id == lock_id and info.holder_running_here() and not force:
        raise LockHeldError(f"stack {stack!r} is locked by {info.holder}, which is still running on this host "
                            f"({info.operation} since {info.acquired_at}); breaking its lock could let two runs "
                            "change the same objects. Wait for it, stop it, or pass --force if you are sure")
    return store.break_lock(stack, lock_id, this_process())
