"""AgentMetrics: the web servers' own readings, from the agent each one runs (crane_iac/appdomain/files/agent.py).

Adaptive push/pull. The agent samples its host every second and POSTs to the receiver at once when memory or CPU
moves by more than its step (and every heartbeat); the receiver (``listen``: an HTTP server in a daemon thread, on
the host's address on the domain's network) keeps the newest sample per host. ``read(tier, now)`` gives, for each of
the tier's hosts, that sample when it was taken within the policy's ``pull_after`` seconds; otherwise it pulls
``GET http://<host>:<agent_port>/sample`` (all hosts at once, ``PULL_TIMEOUT`` each). A host that does neither
gives the newest sample known of it, whose age the decision judges (stale after ``stale_after``), or none: missing.
The value is the policy's signal: ``memory`` or ``cpu`` (a fraction; a reading the agent could not make is no
sample).

It believes only its own servers (docs/decisions/agent-trust.md). ``admit(tier, key)`` (each period) tells it the
tier's hosts, by address, and the domain's key (crane_iac/projectkey.py, which crane's web role gave each agent). A
push is kept only when it comes from the address of a host of an admitted tier (else ``not-in-tier``), carries the
HMAC-SHA256 of ``push\n`` and its exact body under that tier's key (``bad-mac``), names that host (``not-in-tier``)
and is newer (``at``, then ``seq``) than the last push believed from it (``replay``); a body that is no sample is
``malformed``. A pull sends a fresh nonce and believes the answer only with the HMAC of ``pull\n``, the nonce,
``\n`` and the body. Every sample refused is counted by tier and reason (``refused``, and ``on_refused``: the
exporter's ``crane_autoscale_refused_samples_total``); a push from an address of no admitted tier counts for the
tier that receiver serves when it serves one, else for no tier ("").
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import math
import secrets
import socket
import socketserver
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
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
#: the policy's pull_after when a tier's policy does not say
PULL_AFTER = 10.0
#: the header that carries a sample's MAC (the agent's MAC_HEADER)
MAC_HEADER = "X-Crane-Mac"
#: why a sample is refused (the refusals' ``reason`` label)
NOT_IN_TIER, BAD_MAC, REPLAY, MALFORMED = "not-in-tier", "bad-mac", "replay", "malformed"
REASONS = (NOT_IN_TIER, BAD_MAC, REPLAY, MALFORMED)


def mac(key: bytes, kind: str, body: bytes, nonce: str = "") -> str:
    """The hex HMAC-SHA256 of a push (``kind`` "push") or of a pull's answer ("pull", with the pull's nonce): the
    agent's own ``mac``."""
    text = f"{kind}\n".encode() + (f"{nonce}\n".encode() if kind == "pull" else b"") + body
    return hmac.new(key, text, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Member:
    """A host of an admitted tier, by its address: the tier, the host's name, the domain's key."""

    tier: str
    host: str
    key: bytes


class Refused(Exception):
    """A sample not believed: ``reason`` one of REASONS."""

    def __init__(self, reason: str, tier: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.tier = reason, tier


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


def _parsed(body: bytes, sender: str, tier: str) -> AgentSample:
    """``body`` as a sample; ``Refused`` (malformed) saying what is wrong with it."""
    try:
        return parse_sample(json.loads(body), sender)
    except ValueError as exc:  # json's errors are ValueErrors too
        raise Refused(MALFORMED, tier, f"not a sample: {exc}") from None


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
    """``POST /push`` with an agent's sample: 204 when believed; 400 (malformed), 403 (not in the tier, bad MAC) or
    409 (a replay) with the reason when not."""

    server: _Receiver
    timeout = 5  # seconds a client may take to send its request

    def do_POST(self) -> None:
        if self.path != "/push":
            self._reply(404, f"no page {self.path}; agents POST to /push")
            return
        store, sender = self.server.store, str(self.client_address[0])
        where = (str(self.server.server_address[0]), int(self.server.server_address[1]))
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            store.refuse(Refused(MALFORMED, store.tier_of(sender, where), "no Content-Length"))
            self._reply(411, "a push needs a Content-Length")
            return
        if not 0 < length <= MAX_BODY:
            store.refuse(Refused(MALFORMED, store.tier_of(sender, where), "size"))
            self._reply(413 if length > MAX_BODY else 400, f"a push is a sample of at most {MAX_BODY} bytes")
            return
        try:
            store.receive(self.rfile.read(length), self.headers.get(MAC_HEADER), sender, where)
        except Refused as exc:
            self._reply({MALFORMED: 400, REPLAY: 409}.get(exc.reason, 403), f"{exc.reason}: {exc}")
            return
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
        """No access log (a push a second per moving host); refusals are counted, and answered to the sender."""


class AgentMetrics:
    """The receiver of the agents' pushes and the source that reads a tier from them (see the module's docstring).
    One serves every tier of a loop; ``close()`` stops its receivers."""

    def __init__(self, *, pull_timeout: float = PULL_TIMEOUT,
                 on_refused: Callable[[str, str], None] | None = None) -> None:
        self.pull_timeout = pull_timeout
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], AgentSample] = {}
        #: pushes accepted, by host name (for the tests and the curious)
        self.pushes: dict[str, int] = {}
        #: samples refused, by (tier, reason); ``on_refused(tier, reason)`` is told of each as well
        self.refused: Counter[tuple[str, str]] = Counter()
        self.on_refused = on_refused
        #: the admitted tiers' hosts by address, each tier's addresses, and where each tier's pushes are received
        self._members: dict[str, _Member] = {}
        self._addresses: dict[str, set[str]] = {}
        self._receives_at: dict[str, tuple[str, int]] = {}
        #: (at, seq) of the last push believed from each address: an older or equal one is a replay
        self._last_push: dict[str, tuple[float, int]] = {}
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

    def admit(self, tier: ScalableTier, key: bytes) -> None:
        """From now on believe the tier's hosts (as they are now: a host that left is no longer believed), with the
        domain's ``key``."""
        with self._lock:
            for address in self._addresses.pop(tier.address, set()):
                self._members.pop(address, None)
            members = {str(h.ip): _Member(tier.address, h.physical, key) for h in tier.hosts if h.ip is not None}
            self._members.update(members)
            self._addresses[tier.address] = set(members)
            if tier.agent_listen is not None and tier.agent_port is not None:
                self._receives_at[tier.address] = (tier.agent_listen, tier.agent_port)

    def tier_of(self, sender: str, where: tuple[str, int] | None = None) -> str:
        """The tier a sender's samples count for: its own, else the one the receiver at ``where`` serves, else
        ""."""
        with self._lock:
            member = self._members.get(sender)
            if member is not None:
                return member.tier
            served = [t for t, at in self._receives_at.items() if at == where]
        return served[0] if len(served) == 1 else ""

    def receive(self, body: bytes, signature: str | None, sender: str, where: tuple[str, int] | None = None) -> None:
        """Keep a push (``body`` as sent, ``signature`` its MAC header) from ``sender`` if it is believed (see the
        module's docstring), and count it; ``Refused`` (counted) when not."""
        with self._lock:
            member = self._members.get(sender)
        try:
            if member is None:
                raise Refused(NOT_IN_TIER, self.tier_of(sender, where), f"{sender} is no host of an autoscaled tier")
            if not signature or not hmac.compare_digest(signature, mac(member.key, "push", body)):
                raise Refused(BAD_MAC, member.tier, "the push does not carry the MAC of the domain's key")
            sample = _parsed(body, sender, member.tier)
            if sample.host != member.host:
                raise Refused(NOT_IN_TIER, member.tier, f"{sender} is {member.host}, not {sample.host}")
            with self._lock:
                last = self._last_push.get(sender)
                if last is not None and (sample.at, sample.seq) <= last:
                    raise Refused(REPLAY, member.tier, f"at {sample.at} seq {sample.seq} is not after the last push "
                                                       f"(at {last[0]} seq {last[1]})")
                self._last_push[sender] = (sample.at, sample.seq)
                self._store(sample)
                self.pushes[sample.host] = self.pushes.get(sample.host, 0) + 1
        except Refused as exc:
            self.refuse(exc)
            raise

    def refuse(self, refused: Refused) -> None:
        """Count a refused sample."""
        with self._lock:
            self.refused[(refused.tier, refused.reason)] += 1
        if self.on_refused is not None:
            self.on_refused(refused.tier, refused.reason)

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
        """``GET /sample?nonce=N`` of the agent on ``host``; None when it does not answer (or the host is not an
        admitted tier's: no key to check with), or answers with no sample of that host MACed with its domain's key
        (counted as refused)."""
        ip = str(host.ip)
        with self._lock:
            member = self._members.get(ip)
        if member is None or member.host != host.physical:
            return None
        nonce = secrets.token_hex(16)
        url = f"http://[{ip}]:{port}/sample" if ":" in ip else f"http://{ip}:{port}/sample"
        try:
            with self._opener.open(f"{url}?nonce={nonce}", timeout=self.pull_timeout) as response:
                body, signature = response.read(MAX_BODY), response.headers.get(MAC_HEADER)
        except (OSError, ValueError, http.client.HTTPException):  # no answer, or not HTTP
            return None
        try:
            if not signature or not hmac.compare_digest(signature, mac(member.key, "pull", body, nonce)):
                raise Refused(BAD_MAC, member.tier, "the answer does not carry the MAC of the domain's key")
            sample = _parsed(body, ip, member.tier)
            if sample.host != member.host:
                raise Refused(NOT_IN_TIER, member.tier, f"{ip} is {member.host}, not {sample.host}")
        except Refused as exc:
            self.refuse(exc)
            return None
        return sample

    def _remember(self, sample: AgentSample) -> None:
        """A pulled sample, kept as the newest known of its host when it is (not counted as a push)."""
        with self._lock:
            self._store(sample)

    def _store(self, sample: AgentSample) -> None:
        """Keep ``sample`` if it is the newest of its host from its sender (the lock held; only an admitted host's
        samples get here, so what is kept is bounded by the tiers' sizes)."""
        key = (sample.host, sample.sender)
        known = self._samples.get(key)
        if known is None or (sample.at, sample.seq) > (known.at, known.seq):
            self._samples[key] = sample

    def close(self) -> None:
        """Stop every receiver (samples already kept stay readable)."""
        receivers, self._receivers = list(self._receivers.values()), {}
        for receiver in receivers:
            receiver.shutdown()
            receiver.server_close()
