"""The state store interface. Backends are chosen by URL (``sqlite:///…`` now; PostgreSQL drops in later)."""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from crane_iac.objects import DEFAULT_ENDPOINT, Action, Outcome, Recorded


@dataclass(slots=True)
class Intent:
    """A provider mutation crane is about to make, recorded before it is made."""

    address: str
    kind: str
    physical: str
    action: Action
    properties: dict[str, Any] = field(default_factory=dict)
    endpoint: str = DEFAULT_ENDPOINT


@dataclass(slots=True)
class Committed:
    """The outcome of one applied step: the new record, or None once the resource is gone."""

    address: str
    action: Outcome
    record: Recorded | None
    before: dict[str, Any] | None = None
    #: False for the first half of a replacement: its intent stays until the second half is recorded
    final: bool = True


@dataclass
class StackState:
    name: str
    serial: int
    lineage: str
    resources: dict[str, Recorded]
    intents: dict[str, Intent]
    outputs: dict[str, Any]
    #: objects removed from state with `crane state rm`: still on the hypervisor (perhaps with crane's owner
    #: metadata), no longer crane's; refresh must neither adopt them nor delete them as orphans
    forgotten: list[Recorded] = field(default_factory=list)


@dataclass(slots=True)
class HistoryEntry:
    serial: int
    at: str
    action: str
    address: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(slots=True)
class LockInfo:
    holder: str
    operation: str
    acquired_at: str
    id: str = ""
    host: str = ""
    pid: int = 0

    def holder_running_here(self) -> bool | None:
        """Whether the holder is a process still running: True or False on this host; None for another host's
        holder, which cannot be seen from here."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def this_process() -> str:
    """Who holds or breaks a lock: ``user@host pid N``."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


class StateStore(ABC):
    """Recorded state of every stack in a project."""

    #: rows this process inserted or deleted (intents, resources, journal, stack head), shown after an apply
    rows_written: int = 0

    @abstractmethod
    def read(self, stack: str) -> StackState: ...

    @abstractmethod
    def acquire_lock(self, stack: str, operation: str, timeout: float = 0.0) -> str:
        """Take the stack's lock, waiting up to ``timeout`` seconds, and return its ID; raise ``LockHeldError``
        naming the holder and the lock's ID."""

    @abstractmethod
    def release_lock(self, stack: str, lock_id: str) -> None:
        """Release the lock this run holds (a lock someone broke and another run took is left alone)."""

    @abstractmethod
    def lock_info(self, stack: str) -> LockInfo | None: ...

    @abstractmethod
    def break_lock(self, stack: str, lock_id: str, by: str) -> LockInfo:
        """Remove the lock with ``lock_id`` whoever holds it, and journal who broke which lock."""

    @abstractmethod
    def forget(self, stack: str, addresses: list[str]) -> int:
        """Drop resources from state without touching them (`crane state rm`); returns the new serial."""

    @abstractmethod
    def unforget(self, stack: str, kind: str, physical: str) -> None:
        """Let crane manage a forgotten object again (`crane import`)."""

    @abstractmethod
    def move(self, stack: str, moves: list[tuple[str, str]]) -> int:
        """Re-address recorded resources (`crane state mv`, `moved(...)`); their objects keep their names."""

    @abstractmethod
    def record_intents(self, stack: str, intents: list[Intent]) -> None:
        """Durably record what is about to be done, before any provider call."""

    @abstractmethod
    def commit(self, stack: str, committed: list[Committed], outputs: dict[str, Any] | None = None) -> int:
        """Record outcomes (rows proportional to the change), clear their intents, bump and return the serial."""

    @abstractmethod
    def history(self, stack: str, limit: int = 100) -> list[HistoryEntry]: ...

    def close(self) -> None:
        """Release connections."""

