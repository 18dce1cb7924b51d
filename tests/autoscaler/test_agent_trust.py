"""The agents' receiver believes only its own servers: forged pushes (from an address of no tier host, from a tier host
with a bad MAC or none, a tier host speaking for another, another domain's key, a pull's answer sent as a push) and
replayed ones are refused, counted by reason in the exporter's metric, and none of them is read; a pull believes an
answer only with the MAC of its own nonce (an agent with another key, or a recorded answer played back, is refused).
And the project's key: made once, 0600, one per project, a key per domain derived from it."""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from crane_iac.autoscaler.agents import AgentMetrics, mac
from crane_iac.autoscaler.exporter import Exporter
from crane_iac.errors import CraneError
from crane_iac.projectkey import agent_key_name, derived_key, project_key
from crane_iac.scaling import ScalableTier, TierHost
from tests.appdomain.processes import FILES, SYSTEM_PYTHON, free_port
from tests.waiting import wait_until

DOMAIN = "appdomain.shop"
KEY = bytes(range(32))
WEB_1, WEB_2, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def tier(port: int | None = None, listen: str | None = None) -> ScalableTier:
    hosts = (TierHost(f"{DOMAIN}/container.web-1", "container", "shop-web-1", 1, ip=WEB_1),
             TierHost(f"{DOMAIN}/container.web-2", "container", "shop-web-2", 2, ip=WEB_2))
    return ScalableTier(DOMAIN, f"{DOMAIN}/web.size", 2, 2, 1, 4, hosts, {"signal": "memory", "pull_after": 10.0},
                        agent_listen=listen, agent_port=port)


@pytest.fixture
def receiver() -> Iterator[tuple[AgentMetrics, Exporter, int]]:
    """The receiver on 127.0.0.1, the tier admitted with KEY, its refusals counted by an exporter."""
    exporter = Exporter()
    metrics = AgentMetrics(on_refused=exporter.refused_sample)
    port = free_port()
    metrics.listen("127.0.0.1", port)
    metrics.admit(tier(port, "127.0.0.1"), KEY)
    try:
        yield metrics, exporter, port
    finally:
        metrics.close()


def push(port: int, sample: dict[str, object], *, source: str, key: bytes | None = KEY, kind: str = "push") -> int:
    body = json.dumps(sample).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("POST", "/push", body=body, headers={"X-Crane-Mac": mac(key, kind, body)} if key else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_forged_and_replayed_pushes_are_refused_counted_and_never_read(
        receiver: tuple[AgentMetrics, Exporter, int]) -> None:
    metrics, exporter, port = receiver
    now = time.time()
    high = {"host": "shop-web-1", "memory": 0.99, "cpu": 0.99, "at": now + 3600, "seq": 10**9}  # would stick
    other_domain = bytes(32)
    forged = [
        (high, STRANGER, KEY, "push"),  # from no host of the tier, MACed right (a stolen key does not do)
        (high, WEB_1, bytes(reversed(KEY)), "push"),  # from the tier's host, with a bad MAC
        (high, WEB_1, None, "push"),  # with none
        (high, WEB_1, other_domain, "push"),  # another domain's key
        (high, WEB_1, KEY, "pull"),  # a pull's answer's MAC, as a push
        ({**high, "host": "shop-web-2"}, WEB_1, KEY, "push"),  # web-1 speaking for web-2
    ]
    statuses = [push(port, sample, source=source, key=key, kind=kind) for sample, source, key, kind in forged]
    assert statuses == [403] * len(forged)
    assert metrics.read(tier(), now) == [] and metrics.pushes == {}
    # web-1's own push is believed; played back, or older, it is a replay
    real = {"host": "shop-web-1", "memory": 0.3, "cpu": 0.1, "at": now, "seq": 5}
    assert push(port, real, source=WEB_1) == 204
    assert push(port, real, source=WEB_1) == 409
    assert push(port, {**real, "at": now - 1, "seq": 6}, source=WEB_1) == 409
    assert [(s.host, s.value) for s in metrics.read(tier(), now)] == [("shop-web-1", 0.3)]  # not 0.99
    assert metrics.refused == {(DOMAIN, "not-in-tier"): 2, (DOMAIN, "bad-mac"): 4, (DOMAIN, "replay"): 2}
    page = generate_latest(exporter.registry).decode()
    for reason, count in (("not-in-tier", 2), ("bad-mac", 4), ("replay", 2)):
        assert f'crane_autoscale_refused_samples_total{{domain="{DOMAIN}",reason="{reason}"}} {count:.1f}' in page


def test_a_host_that_left_the_tier_is_no_longer_believed(receiver: tuple[AgentMetrics, Exporter, int]) -> None:
    metrics, _, port = receiver
    smaller = tier(port, "127.0.0.1")
    metrics.admit(dataclasses.replace(smaller, hosts=smaller.hosts[:1]), KEY)  # web-2 removed
    sample = {"host": "shop-web-2", "memory": 0.5, "cpu": None, "at": time.time(), "seq": 1}
    assert push(port, sample, source=WEB_2) == 403
    assert metrics.refused == {(DOMAIN, "not-in-tier"): 1}  # counted for the tier this receiver serves


class _Playback(BaseHTTPRequestHandler):
    """Answers every GET with a recorded answer of an agent: its body and its MAC."""

    recorded: tuple[bytes, str] = (b"", "")

    def do_GET(self) -> None:
        body, signature = self.recorded
        self.send_response(200)
        self.send_header("X-Crane-Mac", signature)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_pull_believes_only_an_answer_macd_with_its_own_nonce(tmp_path: Path) -> None:
    """A real agent with the domain's key is believed; one with another key is not; and its believed answer,
    recorded and played back by something else on the host's address, is not either (the nonce is new each pull)."""
    port = free_port()
    procs = []
    for ip, key in ((WEB_1, KEY), (WEB_2, bytes(32))):
        (tmp_path / f"{ip}.key").write_text(key.hex())
        procs.append(subprocess.Popen(
            [SYSTEM_PYTHON, str(FILES / "agent.py"), "--bind", ip, "--port", str(port), "--name",
             "shop-web-1" if ip == WEB_1 else "shop-web-2", "--interval", "0.2", "--key-file",
             str(tmp_path / f"{ip}.key")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    metrics = AgentMetrics()
    metrics.admit(tier(port), KEY)
    try:
        def both_answered() -> list[str] | None:
            hosts = [s.host for s in metrics.read(tier(port), time.time())]
            return hosts if hosts and metrics.refused[(DOMAIN, "bad-mac")] >= 1 else None

        # web-1's answer is believed; web-2's (another key) is refused, each time it is pulled
        assert wait_until(both_answered, 15, "both agents pulled", detail=lambda: metrics.refused) == ["shop-web-1"]
        conn = http.client.HTTPConnection(WEB_1, port, timeout=5)
        conn.request("GET", "/sample?nonce=00ff")
        answer = conn.getresponse()
        _Playback.recorded = (answer.read(), answer.headers["X-Crane-Mac"])
        conn.close()
    finally:
        for proc in procs:
            proc.terminate()
        assert [proc.wait(10) for proc in procs] == [0, 0]
    server = ThreadingHTTPServer((WEB_1, port), _Playback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refused = metrics.refused[(DOMAIN, "bad-mac")]
        assert metrics.pull(tier(port).hosts[0], port) is None
        assert metrics.refused[(DOMAIN, "bad-mac")] == refused + 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_project_key_is_made_once_0600_and_each_domain_has_its_own(tmp_path: Path) -> None:
    crane = tmp_path / ".crane"
    first = project_key(crane)
    assert len(first) == 32 and (crane / "project.key").stat().st_mode & 0o777 == 0o600
    assert project_key(crane) == first and [p.name for p in crane.iterdir()] == ["project.key"]
    shop, blog = (derived_key(crane, agent_key_name(d)) for d in ("appdomain.shop", "appdomain.blog"))
    assert shop != blog and len(shop) == 32 and derived_key(crane, agent_key_name("appdomain.shop")) == shop
    assert project_key(tmp_path / "other" / ".crane") != first
    (crane / "project.key").write_text("not a key\n")
    with pytest.raises(CraneError, match=r"project\.key is not a key crane made .* remove it to make a new one"):
        project_key(crane)
