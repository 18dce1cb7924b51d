"""The load balancer's configuration: what render_haproxy writes passes the real ``haproxy -c``, every balancing
algorithm it accepts really lets a running HAProxy take servers at runtime, and what it or HAProxy refuses is
reported."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from crane_iac.appdomain import haproxy_check
from crane_iac.appdomain.haproxy import BALANCE_ALGORITHMS, SERVER_OPTIONS, Server, render_haproxy
from crane_iac.appdomain.haproxy_check import HAProxyUnavailableError, check_haproxy_config
from tests.appdomain.conftest import NewHAProxy
from tests.appdomain.processes import SYNC, free_port

#: every form of every accepted algorithm
BALANCES = ["roundrobin", "leastconn", "first", "random", "random(3)", "source", "uri", "uri whole len 8 depth 2",
            "url_param session", "hdr(host)", "rdp-cookie", "rdp-cookie(mstshash)"]
THREE = [Server("web-1", "10.0.0.6", 8000), Server("web-2", "10.0.0.7", 8000), Server("web-3", "fd00::8", 8080)]


def render(servers: list[Server], **options: object) -> str:
    """A domain as the component renders it: addresses of the load balancer's container, which this machine does
    not have, and a socket and state file in /run/haproxy-crane-test, which does not exist here."""
    args: dict[str, object] = {"bind": "10.0.0.5", "port": 80, "runtime_socket": "/run/haproxy-crane-test/admin.sock",
                               "state_file": "/run/haproxy-crane-test/servers.state", **options}
    return render_haproxy("shop", servers=servers, **args)  # type: ignore[arg-type]


def test_all_algorithms_are_covered() -> None:
    assert {b.split("(")[0].split()[0] for b in BALANCES} == BALANCE_ALGORITHMS


@pytest.mark.parametrize("balance", BALANCES)
def test_every_algorithm_passes_haproxy_check(balance: str) -> None:
    assert not Path("/run/haproxy-crane-test").exists()
    text = render(THREE, balance=balance)
    assert check_haproxy_config(text) == []
    assert f"    balance {balance}\n" in text
    assert ("hash-type consistent" in text) == (balance.split("(")[0].split()[0] in
                                                ("source", "uri", "url_param", "hdr", "rdp-cookie"))


@pytest.mark.parametrize("servers", [[], THREE[:1], THREE], ids=["no servers", "one", "three with IPv6"])
def test_server_lists_pass_haproxy_check(servers: list[Server]) -> None:
    text = render(servers, stats_port=8404, health_check="/status?db=1")
    assert check_haproxy_config(text) == []
    lines = [line.split() for line in text.splitlines() if line.startswith("    server ")]
    assert [(f[1], f[2]) for f in lines] == [(s.name, s.endpoint) for s in servers]
    assert all(" ".join(f[3:]) == SERVER_OPTIONS for f in lines)
    assert "    option httpchk GET /status?db=1\n" in text
    assert "    bind 10.0.0.5:8404\n" in text


def test_the_runtime_api_is_a_local_admin_socket_and_states_survive_reloads() -> None:
    text = render(THREE)
    assert "    stats socket /run/haproxy-crane-test/admin.sock mode 600 level admin expose-fd listeners\n" in text
    assert "    server-state-file /run/haproxy-crane-test/servers.state\n" in text
    assert "    load-server-state-from-file global\n" in text
    assert not any(line.strip().startswith("default-server") for line in text.splitlines())


@pytest.mark.parametrize("balance", BALANCES)
def test_every_accepted_algorithm_takes_servers_at_runtime(balance: str, haproxy_process: NewHAProxy) -> None:
    lb = haproxy_process()
    lb.start(lb.render([Server("web-1", "127.0.0.1", free_port())], free_port(), balance=balance))
    out = lb.command(f"add server web/web-2 127.0.0.1:{free_port()} {SERVER_OPTIONS}")
    assert out.strip() == "New server registered."
    assert set(lb.servers()) == {"web-1", "web-2"}


def test_static_rr_is_refused_as_haproxy_cannot_add_servers_to_it(haproxy_process: NewHAProxy) -> None:
    with pytest.raises(ValueError, match=r"static-rr.*cannot take web servers added at runtime.*roundrobin"):
        render(THREE, balance="static-rr")
    # the reason, on the real HAProxy: a static-rr backend refuses "add server"
    lb = haproxy_process()
    lb.start(lb.render(THREE[:1], free_port()).replace("balance roundrobin", "balance static-rr"))
    out = lb.command(f"add server web/web-2 127.0.0.1:{free_port()} check")
    assert "dynamic load balancing" in out


@pytest.mark.parametrize("balance", ["bogus", "roundrobin x", "url_param", "hdr", "uri bogus", "random(x)", ""])
def test_an_unknown_algorithm_is_rejected(balance: str) -> None:
    with pytest.raises(ValueError, match=r"unknown balance .*choose one of first, hdr, leastconn"):
        render(THREE, balance=balance)


@pytest.mark.parametrize(("change", "message"), [
    ({"servers": [THREE[0], THREE[0]]}, "used twice"),
    ({"servers": [Server("web-1", "web1.example", 80)]}, "not an IP address"),
    ({"servers": [Server("web 1", "10.0.0.6", 80)]}, "server name"),
    ({"servers": [Server("web-1", "10.0.0.6", 0)]}, "port 0"),
    ({"health_check": "healthz"}, "health check"),
    ({"health_check": "/a b"}, "health check"),
    ({"bind": "10.0.0.5 ssl"}, "bind address"),
    ({"runtime_socket": "admin.sock"}, "runtime socket"),
    ({"port": 70000}, "port 70000"),
])
def test_inputs_haproxy_would_misread_are_rejected(change: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"servers": THREE, **change}
    servers = options.pop("servers")
    with pytest.raises(ValueError, match=message):
        render(servers, **options)  # type: ignore[arg-type]


def test_a_config_haproxy_rejects_gives_its_error_lines() -> None:
    text = render(THREE, bind="10.0.0.300")
    line = text.splitlines().index("    bind 10.0.0.300:80") + 1
    errors = check_haproxy_config(text)
    assert errors == [f"parsing [haproxy.cfg:{line}] : 'bind' : invalid address: '10.0.0.300' in '10.0.0.300:80'"]


def test_several_errors_are_all_reported() -> None:
    text = render(THREE).replace("    retries 3\n", "    retries 3\n    bogus-keyword 1\n")
    text = text.replace("timeout connect 2s", "timeout connect forever")
    errors = check_haproxy_config(text)
    assert len(errors) == 2, errors
    assert "bogus-keyword" in errors[0] and "timeout" in errors[1]
    assert all(e.startswith("parsing [haproxy.cfg:") for e in errors)


def test_a_missing_haproxy_says_to_run_install_sh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(HAProxyUnavailableError, match=r"scripts/install\.sh"):
        check_haproxy_config(render(THREE), haproxy=str(tmp_path / "haproxy"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(haproxy_check, "_SBIN", ())
    with pytest.raises(HAProxyUnavailableError, match=r"haproxy is not installed here.*run scripts/install\.sh"):
        check_haproxy_config(render(THREE))


def test_the_sync_script_adds_servers_as_the_file_writes_them() -> None:
    assert runpy.run_path(str(SYNC), run_name="haproxy_servers")["SERVER_OPTIONS"] == SERVER_OPTIONS
