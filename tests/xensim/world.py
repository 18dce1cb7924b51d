"""The simulated pool as one object: its database, configuration, clock, faults, task workers and call counts.

The server hands every call to :func:`tests.xensim.dispatch.dispatch` with the world; the model modules' handlers
take it as their first argument.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from tests.xensim.config import Clock, PoolSpec, RealClock
from tests.xensim.errors import XenError
from tests.xensim.faults import Faults
from tests.xensim.model.guests import publish_due
from tests.xensim.model.tasks import TaskRunner
from tests.xensim.spec import now_stamp
from tests.xensim.store import Store


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()

    def count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

    def failed(self, method: str, code: str) -> None:
        with self._lock:
            self.failures[(method, code)] += 1

    @property
    def round_trips(self) -> int:
        with self._lock:
            return sum(self.calls.values())


class World:
    def __init__(self, config: PoolSpec, username: str, password: str, clock: Clock | None = None) -> None:
        self.config = config
        self.username = username
        self.password = password
        self.clock: Clock = clock or RealClock()
        self.store = Store()
        self.stats = Stats()
        self.faults = Faults(self.expire_sessions)
        self.tasks = TaskRunner(self)
        self.session_seen: dict[str, float] = {}
        self.guest_due: dict[str, float] = {}  # running VM -> when its guest tools report
        self.guest_free_kib: dict[str, int] = {}  # VM -> the guest's free memory (backdoor), when set
        self.pool = ""
        self.master = ""

    def check_session(self, ref: Any) -> str:
        if not isinstance(ref, str) or not self.store.exists("session", ref):
            raise XenError("SESSION_INVALID", ref)
        self.session_seen[ref] = self.clock.now()
        self.store.get("session", ref)["last_active"] = now_stamp()
        return ref

    def expire_sessions(self) -> None:
        with self.store.lock:
            for ref in list(self.store.all("session")):
                self.store.destroy("session", ref)
            self.session_seen.clear()

    def tick(self) -> None:
        """What time has done since the last call: idle sessions expired, guest tools reporting."""
        now = self.clock.now()
        ttl = self.config.session_ttl
        if ttl is not None:
            for ref, seen in list(self.session_seen.items()):
                if now - seen > ttl:
                    self.store.destroy("session", ref)
                    del self.session_seen[ref]
        publish_due(self, now)

