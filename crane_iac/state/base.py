"""The state store interface: every method crane's engine, CLI, autoscaler and migration call.

Backends are chosen by URL (``sqlite:///PATH``, ``postgresql://…``) in ``crane_iac.state.backends``; every backend
passes one conformance suite (tests/state/test_conformance.py).
"""

from __future__ import annotations

import os
import pwd
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from crane_iac.ipam.pools import Holder, Lease, LeaseRecord, PoolRecord, PoolSpec, Want
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
    #: when it was recorded (set by the store)
    at: str = ""


@dataclass(slots=True)
class Committed:
    """The outcome of one applied step: the new record, or None once the resource is gone."""

    address: str
    action: Outcome
    record: Recorded | None
    before: dict[str, Any] | None = None
    #: False for the first half of a replacement: its intent stays until the second half is recorded
    final: bool = True


@dataclass(slots=True)
class Setting:
    """A durable per-stack value set by someone for a reason (the autoscaler's desired size of a tier); apply
    honours it. ``serial`` is the stack serial its last change made."""

    value: Any
    by: str
    why: str
    at: str
    serial: int


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
    #: durable per-stack settings by key (``set_setting``)
    settings: dict[str, Setting] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class StateOutline:
    """What a stack's run takes from its state, without the recorded properties: the serial it was read at, the
    durable settings, and the hypervisor name of each recorded resource (address → name). A plan runs the stack with
    it while the endpoints connect, and reads the whole state after (``StateStore.outline``)."""

    serial: int
    settings: dict[str, Setting]
    names: dict[str, str]

    @classmethod
    def of(cls, state: StackState) -> StateOutline:
        return cls(state.serial, state.settings, {a: r.physical for a, r in state.resources.items()})


@dataclass(slots=True, frozen=True)
class RunInfo:
    """One locked run (an apply, a refresh, `crane state rm`…): the lock ID it held, who ran it, what command, when
    it took the lock. Every journal line its writes leave names it, so the history shows one run's serials (an
    apply commits in batches, then its outputs) under one header."""

    id: str
    by: str
    operation: str
    started_at: str


@dataclass(slots=True)
class HistoryEntry:
    serial: int
    at: str
    action: str
    address: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: who made the change and why: filled for settings and lock breaks, empty for an ordinary applied step
    by: str = ""
    why: str = ""
    #: the run whose write left the line; None for a write outside a run (a lock break) or from before runs were kept
    run: RunInfo | None = None


@dataclass(slots=True)
class Forgotten:
    """A forgotten object (`crane state rm`) and when it was let go, as a dump carries it."""

    record: Recorded
    at: str


@dataclass
class StackDump:
    """Everything a store holds for one stack, to copy it to another store without loss (``migrate``)."""

    name: str
    serial: int
    lineage: str
    outputs: dict[str, Any]
    #: by address
    resources: list[Recorded]
    #: by address
    intents: list[Intent]
    #: by kind, then name
    forgotten: list[Forgotten]
    #: oldest first, all of it
    history: list[HistoryEntry]
    settings: dict[str, Setting]
    #: what its loops keep between periods (``remember``), by key
    memory: dict[str, Any] = field(default_factory=dict)
    #: its job pipeline's records (``record_job``), by job name
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class Fence:
    """A leader's claim on a write: the write is refused (``FencedError``, nothing written) unless ``token`` is still
    the token of the ``role``'s lease of the stack, checked inside the write's transaction."""

    role: str
    token: int


@dataclass(frozen=True, slots=True)
class Leader:
    """Who holds the lease of a stack's ``role`` (``StateStore.lead``): its token, the run that holds it
    (``holder_id``, one per process run), who that is, since when, and how many seconds its lease has left by the
    database's clock (≤ 0: lapsed; the next ``lead`` of another run takes it over)."""

    role: str
    token: int
    holder_id: str
    holder: str
    host: str
    pid: int
    since: str
    remaining: float

    @property
    def fence(self) -> Fence:
        return Fence(self.role, self.token)

    def describe(self) -> str:
        """``root@web-1 pid 4242 since 2025-06-01T10:00:00+00:00 (token 3)``."""
        return f"{self.holder} since {self.since} (token {self.token})"


def this_process() -> str:
    """Who holds or breaks a lock: ``user@host pid N`` (the uid only when it has no passwd entry)."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def mask_url(url: str) -> str:
    """``url`` fit to print or store: a password (``user:secret@host`` or ``?password=secret``) becomes ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    if password is None and "password" not in parts.query:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="/*")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")


class StateStore(ABC):
    """Recorded state of every stack in a project.

    Every write that changes a stack bumps its serial and leaves lines in its history. A write given
    ``expected_serial`` checks it and writes in one transaction: when another writer moved the serial first, it
    raises ``StaleStateError`` and writes nothing.
    """

    #: rows this process inserted or deleted (intents, resources, journal, stack head), shown after an apply
    rows_written: int = 0
    #: where the state lives, with any password masked: fit for messages
    url: str = ""
    #: whether processes on several machines share the store (a server's database): replicas of a loop stand by on
    #: it; on a store of one machine's (a SQLite file) a second loop refuses to start
    shared: bool = False

    # reading

    @abstractmethod
    def read(self, stack: str) -> StackState:
        """The stack's resources, intents, outputs, forgotten objects and settings, as of one serial."""

    def outline(self, stack: str) -> StateOutline:
        """The stack's serial, settings and recorded names, as of one serial: a store that can read them without the
        rest (a few MB for 10,000 resources instead of 20) does."""
        return StateOutline.of(self.read(stack))

    @abstractmethod
    def history(self, stack: str, limit: int = 100) -> list[HistoryEntry]:
        """The last ``limit`` journal lines, oldest first."""

    @abstractmethod
    def settings(self, stack: str) -> dict[str, Setting]:
        """The stack's durable settings by key."""

    @abstractmethod
    def stacks(self) -> list[str]:
        """Every stack this store holds anything for, sorted."""

    # locking

    @abstractmethod
    def acquire_lock(self, stack: str, operation: str, timeout: float = 0.0) -> str:
        """Take the stack's lock, waiting up to ``timeout`` seconds, and return its ID; raise ``LockHeldError``
        naming the holder and the lock's ID."""

    @abstractmethod
    def release_lock(self, stack: str, lock_id: str) -> None:
        """Release the lock this run holds (a lock someone broke and another run took is left alone)."""

    @abstractmethod
    def lock_info(self, stack: str) -> LockInfo | None:
        """Who holds the stack's lock, or None when nobody (a dead holder's leftover counts as nobody where the
        backend can tell)."""

    @abstractmethod
    def break_lock(self, stack: str, lock_id: str, by: str, *, why: str = "crane force-unlock") -> LockInfo:
        """Remove the lock with ``lock_id`` whoever holds it, and journal who broke which lock and why."""

    # writing

    @abstractmethod
    def record_intents(self, stack: str, intents: list[Intent]) -> None:
        """Durably record what is about to be done, before any provider call."""

    @abstractmethod
    def commit(self, stack: str, committed: list[Committed], outputs: dict[str, Any] | None = None, *,
               expected_serial: int | None = None, run: RunInfo | None = None,
               released: Sequence[Lease] = ()) -> int:
        """Record outcomes (rows proportional to the change), clear their intents, bump and return the serial.
        ``run`` (here and in every write below) is the locked run making the write, named by its journal lines.
        ``released``: leases of ``stack`` given back in the same transaction (each only while it still is the
        holder's, with that value), each journalled as a ``release``."""

    @abstractmethod
    def forget(self, stack: str, addresses: list[str], *, expected_serial: int | None = None,
               run: RunInfo | None = None) -> int:
        """Drop resources from state without touching them (`crane state rm`); returns the new serial."""

    @abstractmethod
    def unforget(self, stack: str, kind: str, physical: str, *, endpoint: str = DEFAULT_ENDPOINT) -> None:
        """Let crane manage a forgotten object of ``endpoint`` again (`crane import`)."""

    @abstractmethod
    def move(self, stack: str, moves: list[tuple[str, str]], *, expected_serial: int | None = None,
             run: RunInfo | None = None) -> int:
        """Re-address recorded resources (`crane state mv`, `moved(...)`); their objects keep their names."""

    @abstractmethod
    def set_setting(self, stack: str, key: str, value: Any, *, by: str, why: str,
                    expected_serial: int | None = None, run: RunInfo | None = None, fence: Fence | None = None,
                    memory: Mapping[str, Any] | None = None) -> int:
        """Set a durable setting to a JSON value (None deletes it); bumps and returns the serial and journals the
        change as ``setting:<key>`` with who and why. ``fence``: only while it holds (``FencedError`` otherwise);
        ``memory``: ``remember`` these in the same transaction."""

    # replicated loops: one leads, by a lease with a fencing token; what they keep between periods

    @abstractmethod
    def lead(self, stack: str, role: str, *, holder_id: str, ttl: float) -> Leader:
        """Take or renew the lease of ``stack``'s ``role`` for ``ttl`` seconds (by the database's clock) and return
        its leader: this run (``holder_id``) when it held the lease already (renewed, same token) or the lease had
        lapsed or was never taken (taken, token + 1); else the run that holds it, untouched. SQLite state, on one
        machine, also takes over a lease whose holder was a process of this host that is gone."""

    @abstractmethod
    def leader(self, stack: str, role: str) -> Leader | None:
        """Who holds or last held the lease of ``stack``'s ``role``; None if nobody ever took it."""

    @abstractmethod
    def resign(self, stack: str, role: str, *, holder_id: str) -> None:
        """Let the lease lapse now if ``holder_id`` holds it (a loop that stops: a standby takes over at once)."""

    @abstractmethod
    def remember(self, stack: str, memory: Mapping[str, Any], *, fence: Fence | None = None) -> None:
        """Keep JSON values by key for the stack's loops (a key's value replaces the one before), in one
        transaction; with ``fence``, only while it holds. Not journalled, no serial: a plan never reads them."""

    @abstractmethod
    def memory(self, stack: str) -> dict[str, Any]:
        """What ``remember`` kept for the stack, by key."""

    # the job pipeline's journal (``crane job run``)

    @abstractmethod
    def record_job(self, stack: str, name: str, record: Mapping[str, Any], *, line: Mapping[str, Any],
                   by: str = "") -> None:
        """Keep ``record`` (a job's steps, status and times, JSON) as job ``name`` of ``stack``, replacing the one
        before, and journal ``line`` (the step that changed) as a ``job`` line at ``job:<name>`` in the stack's
        history, at its current serial: a job changes no resource, so it does not advance the serial a plan reads."""

    @abstractmethod
    def jobs(self, stack: str) -> dict[str, dict[str, Any]]:
        """The job records of ``stack`` by name (``record_job``'s)."""

    # copying between stores

    @abstractmethod
    def export_stack(self, stack: str) -> StackDump:
        """Everything held for ``stack``, in one consistent read."""

    @abstractmethod
    def import_stacks(self, dumps: Sequence[StackDump]) -> None:
        """Write whole stacks as dumped, all or nothing; refuse (``StateError``, nothing written) when this store
        already holds any of them."""

    # address pools, shared by every stack of the store

    @abstractmethod
    def lease(self, stack: str, pools: Sequence[PoolSpec], wants: Sequence[tuple[str, Want]], *,
              parents: dict[str, str] | None = None) -> dict[tuple[str, Holder], str]:
        """The value of each (pool, want), chosen and written in one transaction: a holder's lease where it has
        one, else a new ``planned`` lease. ``pools`` are the pools the wants name as ``stack`` declares them
        (``parents``: a network's own pool → the pool its subnet came from). A pool declared otherwise by another
        stack, a new pool overlapping another, a value the pool cannot give, or an exhausted pool is an
        IpamError, and nothing is written. Two runs at once never get one value: the database forbids it."""

    @abstractmethod
    def ip_pools(self) -> list[PoolRecord]:
        """Every pool the store knows, by name."""

    @abstractmethod
    def ip_leases(self, *, pool: str | None = None, stack: str | None = None) -> list[LeaseRecord]:
        """The leases of one pool, of one stack, or all, by pool and value."""

    @abstractmethod
    def import_pools(self, pools: Sequence[PoolRecord], leases: Sequence[LeaseRecord]) -> None:
        """Copy pools and their leases in as they are (``crane state migrate``), in one transaction; a pool the store
        holds already is refused, and nothing is written."""

    @abstractmethod
    def drop_pool(self, name: str) -> list[PoolRecord]:
        """Drop a pool no one holds a value from (``crane ipam rm``), with its networks' own pools; the pools dropped.
        A pool with leases is refused (``IpamError`` naming them), and nothing is dropped."""

    @abstractmethod
    def release_lease(self, pool: str, value: str) -> LeaseRecord:
        """Give back one lease whose resource no stack records any longer (``crane ipam release``); a lease of a
        recorded resource is refused."""

    def close(self) -> None:
        """Release connections (and any lock this store still holds)."""
