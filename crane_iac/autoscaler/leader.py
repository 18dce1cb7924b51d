"""Which replica of `crane autoscale` leads a stack: a lease in the state store with a fencing token
(``StateStore.lead``; docs/decisions/autoscaler-replicas.md).

Every replica tries to take the lease at each period; the one that holds it renews it from a thread every third of
the lease (so a long apply does not let it lapse) and runs the periods; the others stand by. A leader killed with
SIGKILL stops renewing, one cut off from the database cannot renew: its lease lapses within ``ttl`` seconds, and a
standby takes it over at its next period, with the token one higher. Every write of the leader carries its token
(``fence``), so a deposed leader that comes back (a stall, a database that answers again) writes nothing: the
store refuses the write inside its transaction. Before an apply the leader renews at once (``confirm``), so one that
lost the lease does not apply either. A leader that cannot renew for ``ttl`` seconds counts itself deposed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from crane_iac.errors import CraneError, FencedError
from crane_iac.state.base import Fence, Leader, StateStore

#: the lease's role: one leader per stack for the autoscaler
ROLE = "autoscale"


@dataclass
class Leadership:
    """This process's claim on the lease of ``stack``'s autoscaler."""

    store: StateStore
    stack: str
    ttl: float
    log: Callable[[str], None] = print
    holder_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: the lease's leader as last seen (this process's when it leads)
    seen: Leader | None = field(default=None, init=False)
    _fence: Fence | None = field(default=None, init=False)
    _renewed: float = field(default=-float("inf"), init=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _beat: threading.Thread | None = field(default=None, init=False, repr=False)
    _cut_off: bool = field(default=False, init=False, repr=False)

    def try_lead(self) -> bool:
        """Take or renew the lease; whether this process leads now. A change of leader is logged."""
        with self._guard:
            started = time.monotonic()
            try:
                leader = self.store.lead(self.stack, ROLE, holder_id=self.holder_id, ttl=self.ttl)
            except CraneError as exc:  # the database cannot be reached: lead on only while the lease surely holds
                if not self._cut_off:
                    self.log(f"autoscale: cannot renew the lease: {exc}")
                self._cut_off = True
                if self._fence is not None and started - self._renewed >= self.ttl:
                    self._fence = None
                    self.log("autoscale: the lease has lapsed: standing by")
                return self._fence is not None
            self._cut_off = False
            before, self.seen = self.seen, leader
            if leader.holder_id == self.holder_id:
                if self._fence != leader.fence:
                    self.log(f"autoscale: leading (token {leader.token})")
                self._fence, self._renewed = leader.fence, started
                return True
            if self._fence is not None or before is None or before.token != leader.token:
                self.log(f"autoscale: standing by: {leader.describe()} leads")
            self._fence = None
            return False

    @property
    def fence(self) -> Fence | None:
        """The token this process's writes carry while it leads (None while it stands by)."""
        return self._fence

    def confirm(self) -> Fence:
        """Renew the lease now (before an apply): its fence, or FencedError if this process no longer leads."""
        if not self.try_lead() or self._fence is None:
            holder = self.seen.describe() if self.seen is not None else "nobody"
            raise FencedError(f"this autoscaler no longer leads stack {self.stack!r} ({holder} does): not applying")
        return self._fence

    def start(self) -> None:
        """Renew the lease every third of ``ttl`` from a thread, while this process leads."""
        def beat() -> None:
            while not self._stop.wait(self.ttl / 3):
                if self._fence is not None:
                    self.try_lead()

        self._beat = threading.Thread(target=beat, name="crane-autoscale-lease", daemon=True)
        self._beat.start()

    def resign(self) -> None:
        """Stop renewing and let the lease lapse now, if this process holds it (a standby takes over at once)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._guard:
            if self._fence is not None:
                try:
                    self.store.resign(self.stack, ROLE, holder_id=self.holder_id)
                except CraneError as exc:
                    self.log(f"autoscale: could not give up the lease ({exc}); it lapses in {self.ttl:g} s")
                self._fence = None
