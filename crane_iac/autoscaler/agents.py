"""AgentMetrics: the web servers' own readings, from the agent each one runs (crane_iac/appdomain/files/agent.py).

Adaptive push/pull. The agent samples its host every second and POSTs to the receiver at once when memory or CPU
moves by more than its step (and every heartbeat); the receiver (``listen``: an HTTP server in a daemon thread, on
the host's address on the domain's network) keeps the newest sample per host. ``read(tier, now)`` gives, for each of
the tier's hosts, that sample when it was taken within the policy's ``pull_after`` seconds; otherwise it pulls
``GET http://<host>:<agent_port>/sample`` (all hosts at once, ``PULL_TIMEOUT`` each). A host that does neither
gives the newest sample known of it, whose age the decision judges (stale after ``stale_after``), or none: missing.
A sample counts for a host only when it came from that host's address and names it. The value is the policy's
signal: ``memory`` or ``cpu`` (a fraction; a reading the agent could not make is no sample).
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import socketserver
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crane_iac.autoscaler.decision import Sample
from crane_iac.errors import CraneError
from crane_iac.scaling import ScalableTier, TierHost

#: seconds a pull may take before the host counts as not answering
PULL_TIMEOUT = 1.0
#: the largest push accepted, in bytes (a sample is about 120)
MAX_BODY = 4096
#: hosts (name and sender) the receiver keeps a sample of; a push for one more drops the oldest
MAX_HOSTS = 4096
#: the policy's pull_after when a tier's policy does not say
PULL_AFTER = 10.0


@dataclass(frozen=True, slots=True)
class AgentSample:
    """One sample an agent took: memory and CPU as fractions (None: it could not read them), its clock's time, its
    number since the agent started, and the address it came from."""

    host: str
    memory: float | None
    cpu: float | None
    at: float
    seq: int
    sender: str


def parse_sample(data: Any, sender: str) -> AgentSample:
    """An agent's JSON as a sample; ``ValueError`` saying what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("a sample is a JSON object")
    host = data.get("host")
    if not isinstance(host, str) or not 0 < len(host) <= 253 or not host.isprintable():
        raise ValueError("'host' must be the host's name")
    values = {}
    for key in ("memory", "cpu"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < math.inf):
            raise ValueError(f"{key!r} must be a fraction of 0 or more, or null")
        values[key] = None if value is None else float(value)
    at, seq = data.get("at"), data.get("seq")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 < at < math.inf:
        raise ValueError("'at' must be the sample's unix time")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("'seq' must be the sample's number, 0 or more")
    return AgentSample(host, values["memory"], values["cpu"], float(at), seq, sender)


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: AgentMetrics) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.store = store
        super().__init__(address, _PushHandler)

    def server_bind(self) -> None:
        """Without http.server's reverse lookup of its own address (a bridge's address may have no name)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _PushHandler(BaseHTTPRequestHandler):
    """``POST /push`` with an agent's sample: 204 when kept, 400 with the reason when not."""

    server: _Receiver
    timeout = 5  # seconds a client may take to send its request

    def do_POST(self) -> None:
        if self.path != "/push":
            self._reply(404, f"no page {self.path}; agents POST to /push")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, "a push needs a Content-Length")
            return
        if not 0 < length <= MAX_BODY:
            self._reply(413 if length > MAX_BODY else 400, f"a push is a sample of at most {MAX_BODY} bytes")
            return
        try:
            sample = parse_sample(json.loads(self.rfile.read(length)), self.client_address[0])
        except ValueError as exc:  # json's errors are ValueErrors too
            self._reply(400, f"not a sample: {exc}")
            return
        self.server.store.keep(sample)
        self._reply(204, "")

    def do_GET(self) -> None:
        self._reply(405, "agents POST their samples to /push")

    def _reply(self, status: int, text: str) -> None:
        data = (text + "\n").encode() if text else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log (a push a second per moving host); refusals are answered to the agent, which logs them."""


class AgentMetrics:
    """The receiver of the agents' pushes and the source that reads a tier from them (see the module's docstring).
    One serves every tier of a loop; ``close()`` stops its receivers."""

    def __init__(self, *, pull_timeout: float = PULL_TIMEOUT) -> None:
        self.pull_timeout = pull_timeout
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], AgentSample] = {}
        #: pushes accepted, by host name (for the tests and the curious)
        self.pushes: dict[str, int] = {}
        self._receivers: dict[tuple[str, int], _Receiver] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy

    def listen(self, address: str, port: int) -> bool:
        """Receive pushes on ``address:port`` from now on (once: True the first time); ``CraneError`` when the
        address cannot be bound (not this machine's, or the port taken)."""
        if (address, port) in self._receivers:
            return False
        try:
            receiver = _Receiver((address, port), self)
        except OSError as exc:
            raise CraneError(f"cannot receive the agents' pushes on {address}:{port}: {exc.strerror or exc}") \
                from None
        threading.Thread(target=receiver.serve_forever, name=f"agents-{address}:{port}", daemon=True).start()
        self._receivers[(address, port)] = receiver
        return True

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The (address, port) each receiver is bound to (the port the system chose for port 0)."""
        return [(str(r.server_address[0]), int(r.server_address[1])) for r in self._receivers.values()]

    def keep(self, sample: AgentSample) -> None:
        """Keep a pushed ``sample`` if it is the newest of its host from its sender, and count the push."""
        with self._lock:
            self._store(sample)
            self.pushes[sample.host] = self.pushes.get(sample.host, 0) + 1

    def newest(self, host: str, sender: str) -> AgentSample | None:
        with self._lock:
            return self._samples.get((host, sender))

    def read(self, tier: ScalableTier, now: float) -> list[Sample]:
        signal = tier.policy.get("signal", "memory")
        pull_after = float(tier.policy.get("pull_after", PULL_AFTER))
        hosts = [h for h in tier.hosts if h.ip is not None]
        known = {h.physical: self.newest(h.physical, str(h.ip)) for h in hosts}
        to_pull = [h for h in hosts if (s := known[h.physical]) is None or s.at < now - pull_after]
        if to_pull and tier.agent_port is not None:
            port = tier.agent_port
            with ThreadPoolExecutor(min(16, len(to_pull)), thread_name_prefix="agents-pull") as pool:
                for host, pulled in zip(to_pull, pool.map(lambda h: self.pull(h, port), to_pull), strict=True):
                    if pulled is not None:
                        self._remember(pulled)
                        known[host.physical] = self.newest(host.physical, str(host.ip))
        samples = []
        for name, sample in known.items():
            value = None if sample is None else getattr(sample, signal, None)
            if sample is not None and isinstance(value, float):
                samples.append(Sample(name, value, sample.at))
        return samples

    def pull(self, host: TierHost, port: int) -> AgentSample | None:
        """``GET /sample`` of the agent on ``host``; None when it does not answer with a sample of that host."""
        ip = str(host.ip)
        url = f"http://[{ip}]:{port}/sample" if ":" in ip else f"http://{ip}:{port}/sample"
        try:
            with self._opener.open(url, timeout=self.pull_timeout) as response:
                sample = parse_sample(json.loads(response.read(MAX_BODY)), ip)
        except (OSError, ValueError, http.client.HTTPException):  # no answer, or not HTTP, or not a sample
            return None
        return sample if sample.host == host.physical else None

    def _remember(self, sample: AgentSample) -> None:
        """A pulled sample, kept as the newest known of its host when it is (not counted as a push)."""
        with self._lock:
            self._store(sample)

    def _store(self, sample: AgentSample) -> None:
        """Keep ``sample`` if it is the newest of its host from its sender (the lock held). With ``MAX_HOSTS``
        kept, the oldest goes: pushes under made-up names (anything on the bridge can send them) cannot lock real
        servers out, and a real server that lost its entry is pulled until it pushes again."""
        key = (sample.host, sample.sender)
        known = self._samples.get(key)
        if known is None and len(self._samples) >= MAX_HOSTS:
            oldest = min(self._samples, key=lambda k: self._samples[k].at)
            del self._samples[oldest]
            self.pushes.pop(oldest[0], None)
        if known is None or (sample.at, sample.seq) > (known.at, known.seq):
            self._samples[key] = sample

    def close(self) -> None:
        """Stop every receiver (samples already kept stay readable)."""
        receivers, self._receivers = list(self._receivers.values()), {}
        for receiver in receivers:
            receiver.shutdown()
            receiver.server_close()
