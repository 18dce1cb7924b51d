"""TLS to the pool master: verified by default (a self-signed certificate is refused, clearly), trusted when its
fingerprint is pinned or its certificate given as ``ca_cert``, and refused when the pin is another's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ProjectDir, assert_clean_error
from tests.providers.xenapi.conftest import PASSWORD_VAR, write_project


@pytest.fixture
def tls_sim() -> Iterator[Any]:
    from tests.xensim import PoolSpec, Simulator

    with Simulator(PoolSpec(), tls=True) as simulator:
        yield simulator


@pytest.fixture
def tls_project(project: ProjectDir, monkeypatch: pytest.MonkeyPatch, tls_sim: Any) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, tls_sim.password)
    assert tls_sim.url.startswith("https://")
    return project


def test_a_self_signed_certificate_is_refused_by_default(tls_project: ProjectDir, tls_sim: Any) -> None:
    write_project(tls_project, tls_sim)
    # in a process of its own: the simulator's server thread prints the handshake it lost to this one's stderr
    result = tls_project.crane("plan", env={PASSWORD_VAR: tls_sim.password})
    assert_clean_error(result, "the TLS connection to", "self-signed certificate", "pinned_sha256")


def test_a_pinned_fingerprint_or_the_certificate_as_ca_is_trusted(tls_project: ProjectDir, tls_sim: Any) -> None:
    pin = ":".join(tls_sim.cert_sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    write_project(tls_project, tls_sim, extra=f'pinned_sha256 = "{pin}"')
    plan = tls_project.crane("plan")
    assert plan.code == 0 and "Plan: 3 to create" in plan.out, plan
    (tls_project.root / "pool.pem").write_text(tls_sim.cert_pem)
    write_project(tls_project, tls_sim, extra=f'ca_cert = "{tls_project.root / "pool.pem"}"')
    assert tls_project.crane("plan").code == 0


def test_another_fingerprint_is_refused(tls_project: ProjectDir, tls_sim: Any) -> None:
    write_project(tls_project, tls_sim, extra=f'pinned_sha256 = "{"ab" * 32}"')
    assert_clean_error(tls_project.crane("plan"), "does not have the fingerprint pinned_sha256 names")
