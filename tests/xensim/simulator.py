"""The XenAPI simulator: a pool (see :class:`~tests.xensim.config.PoolSpec`) behind an XML-RPC endpoint on
127.0.0.1 that the official ``XenAPI`` SDK talks to as it would to a pool master.

    with Simulator(PoolSpec()) as sim:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password(sim.username, sim.password, "2.21", "my-tool")

``url``, ``username``, ``password`` (random per run); ``round_trips`` and ``calls`` (requests served, in all and
per wire method); ``failures`` (``(method, code)`` counts of the failures answered); ``faults``
(:class:`~tests.xensim.faults.Faults`); ``backdoor`` (:class:`~tests.xensim.backdoor.Backdoor`);
``restart_master()``; with ``tls=True`` an HTTPS endpoint whose self-signed certificate is ``cert_pem`` with the
fingerprint ``cert_sha256``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

from tests.xensim.backdoor import Backdoor
from tests.xensim.config import Clock, PoolSpec
from tests.xensim.faults import Faults
from tests.xensim.model import host, network, storage, vms
from tests.xensim.server import Endpoint
from tests.xensim.world import World


class Simulator:
    def __init__(self, spec: PoolSpec | None = None, *, tls: bool = False, clock: Clock | None = None,
                 username: str = "root") -> None:
        self.spec = spec or PoolSpec()
        self.username = username
        self.password = secrets.token_urlsafe(16)
        self.world = World(self.spec, username, self.password, clock)
        with self.world.store.lock:
            host.build(self.world)
            network.build(self.world)
            storage.build(self.world)
            vms.build(self.world)
        self.cert_pem: str | None = None
        self.cert_sha256: str | None = None
        context = None
        if tls:
            from tests.xensim.tls import self_signed

            cert = self_signed()
            self.cert_pem, self.cert_sha256 = cert.cert_pem, cert.sha256
            context = cert.server_context()
        self._scheme = "https" if tls else "http"
        self._endpoint = Endpoint(self.world, context)
        self.backdoor = Backdoor(self.world)

    # lifecycle
    def start(self) -> Simulator:
        self._endpoint.start()
        return self

    def stop(self) -> None:
        self.world.faults.clear()
        self._endpoint.stop()
        self.world.tasks.shutdown()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop_master(self) -> None:
        """The pool master goes away: the port refuses connections, open ones are closed, sessions are lost."""
        self._endpoint.stop()
        self.world.expire_sessions()

    def start_master(self) -> None:
        """The master is back, on the same port, with the same pool."""
        self._endpoint.start()

    def restart_master(self) -> None:
        self.stop_master()
        self.start_master()

    # what tests read
    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._endpoint.port}/"

    @property
    def port(self) -> int:
        return self._endpoint.port

    @property
    def faults(self) -> Faults:
        return self.world.faults

    @property
    def round_trips(self) -> int:
        return self.world.stats.round_trips

    @property
    def calls(self) -> Counter[str]:
        return Counter(self.world.stats.calls)

    @property
    def failures(self) -> Counter[tuple[str, str]]:
        return Counter(self.world.stats.failures)

    def reset_counts(self) -> None:
        self.world.stats.calls.clear()

    def __repr__(self) -> str:
        return f"<xensim Simulator {self.url} hosts={[h.name for h in self.spec.hosts]}>"

    def __getstate__(self) -> Any:
        raise TypeError("a Simulator cannot be pickled")
