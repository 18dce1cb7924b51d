"""``crane xen cpu-mask ENDPOINT`` against a simulated heterogeneous pool (tests/xensim): each host's CPU, the
common mask, the hosts that need it with the xe command for each, and ``--apply`` through the API where the pool's
version offers ``host.set_cpu_features`` (else the commands, and nothing set)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from crane_iac.providers.xenapi.cpu import common_mask, pool_cpus
from tests.conftest import ProjectDir
from tests.xensim import HostSpec, PoolSpec, Simulator

PASSWORD_VAR = "CRANE_TEST_XEN_PASSWORD"
#: the oldest host's features: every other host has these and more, so they are the common mask
BASE = "17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000-0c000000"
NEWER = "17cbfbff-f7fa3223-2d93fbff-00000123-00000001-000007ab-000000ff-00000000-00001000-0c000000"
OTHER = "17cbfbff-f7fa3223-2d93fbff-00000023-00000003-000007ab-00000000-00000000-00001000-0c000000"
CONFIG = """
[stacks.main]
file = "stacks/main.py"
[stacks.main.providers.pool]
type = "xenapi"
uri = "{url}"
username = "{username}"
password_env = "{var}"
"""


def heterogeneous(*, settable: bool = False, other_vendor: str = "GenuineIntel") -> PoolSpec:
    return PoolSpec(hosts=[HostSpec("base-1", cpu_features=BASE),
                           HostSpec("newer-1", cpu_features=NEWER, cpu_model="Intel(R) Xeon(R) Gold 6230"),
                           HostSpec("other-1", cpu_features=OTHER, cpu_vendor=other_vendor)],
                    cpu_features_settable=settable)


@pytest.fixture
def pool(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    spec = getattr(request, "param", None) or heterogeneous()
    with Simulator(spec) as sim:
        yield sim


@pytest.fixture
def xen(project: ProjectDir, pool: Simulator, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    monkeypatch.setenv(PASSWORD_VAR, pool.password)
    project.write_config(CONFIG.format(url=pool.url, username=pool.username, var=PASSWORD_VAR))
    return project


def uuids(sim: Simulator) -> dict[str, str]:
    return {rec["name_label"]: rec["uuid"] for rec in sim.backdoor.records("host").values()}


def cpu_infos(sim: Simulator) -> dict[str, dict[str, Any]]:
    return {rec["name_label"]: rec["cpu_info"] for rec in sim.backdoor.records("host").values()}


def test_it_prints_each_host_s_cpu_the_common_mask_and_the_commands_for_the_hosts_needing_it(
        xen: ProjectDir, pool: Simulator) -> None:
    out = xen.crane("xen", "cpu-mask", "pool")
    assert out.code == 0, out
    ids = uuids(pool)
    assert "Pool at " in out.out and "3 hosts" in out.out
    assert "Intel(R) Xeon(R) Gold 6230" in out.out and f"features {NEWER}" in out.out
    assert f"Common mask: {BASE}" in out.out
    assert "Hosts that need it (their CPUs have features another host lacks): newer-1, other-1" in out.out
    assert f"xe host-set-cpu-features uuid={ids['newer-1']} features={BASE}" in out.out
    assert f"xe host-set-cpu-features uuid={ids['other-1']} features={BASE}" in out.out
    assert f"uuid={ids['base-1']}" not in out.out  # its features are the mask already
    assert pool.calls["host.get_all_records"] == 1 and pool.calls["host.set_cpu_features"] == 0
    assert pool.backdoor.sessions() == []  # logged out


def test_json_names_the_mask_the_hosts_and_the_commands(xen: ProjectDir, pool: Simulator) -> None:
    out = xen.crane("xen", "cpu-mask", "pool", "--json")
    assert out.code == 0, out
    found = json.loads(out.out)
    assert found["mask"] == BASE and found["needing"] == ["newer-1", "other-1"] and found["applied"] is None
    hosts = {h["name"]: h for h in found["hosts"]}
    assert hosts["base-1"]["needs_mask"] is False and hosts["base-1"]["mask"] is None
    assert hosts["newer-1"] == {"name": "newer-1", "uuid": uuids(pool)["newer-1"], "vendor": "GenuineIntel",
                                "model": "Intel(R) Xeon(R) Gold 6230", "features": NEWER, "needs_mask": True,
                                "mask": BASE, "features_after_reboot": None}
    assert found["commands"] == [f"xe host-set-cpu-features uuid={uuids(pool)[n]} features={BASE}"
                                 for n in ("newer-1", "other-1")]


def test_apply_where_the_api_lacks_set_cpu_features_says_so_sets_nothing_and_prints_the_commands(
        xen: ProjectDir, pool: Simulator) -> None:
    out = xen.crane("xen", "cpu-mask", "pool", "--apply")
    assert out.code == 0, out
    assert "This pool's API has no host.set_cpu_features (removed in XenServer 7.0" in out.out
    assert "nothing was set" in out.out
    assert f"xe host-set-cpu-features uuid={uuids(pool)['newer-1']} features={BASE}" in out.out
    assert pool.failures[("host.set_cpu_features", "MESSAGE_REMOVED")] == 1  # asked once, not once per host
    assert {name: info["features"] for name, info in cpu_infos(pool).items()} == {
        "base-1": BASE, "newer-1": NEWER, "other-1": OTHER}


@pytest.mark.parametrize("pool", [heterogeneous(settable=True)], indirect=True)
def test_apply_sets_the_mask_on_the_hosts_needing_it_which_take_it_when_they_reboot(
        xen: ProjectDir, pool: Simulator) -> None:
    out = xen.crane("xen", "cpu-mask", "pool", "--apply", "--json")
    assert out.code == 0, out
    assert json.loads(out.out)["applied"] == {"set_cpu_features_offered": True, "set": ["newer-1", "other-1"],
                                              "must_reboot": ["newer-1", "other-1"], "failed": []}
    assert pool.calls["host.set_cpu_features"] == 2  # not on the host that has the mask already
    infos = cpu_infos(pool)
    assert infos["newer-1"]["features_after_reboot"] == BASE and infos["newer-1"]["features"] == NEWER

    again = xen.crane("xen", "cpu-mask", "pool")
    assert f"features {NEWER}; set for its next boot: {BASE}" in again.out, again

    for host in ("newer-1", "other-1"):
        pool.backdoor.reboot_host(host)
    after = xen.crane("xen", "cpu-mask", "pool")
    assert after.code == 0, after
    assert "Every host has exactly the common features: none needs the mask." in after.out


@pytest.mark.parametrize("pool", [heterogeneous(settable=True)], indirect=True)
def test_apply_in_text_says_the_hosts_must_reboot(xen: ProjectDir, pool: Simulator) -> None:
    out = xen.crane("xen", "cpu-mask", "pool", "--apply")
    assert out.code == 0, out
    assert "Set the mask on newer-1, other-1. It takes effect when they reboot" in out.out


@pytest.mark.parametrize("pool", [heterogeneous(settable=True)], indirect=True)
def test_a_connection_dropped_while_setting_is_a_failure_without_a_traceback(xen: ProjectDir,
                                                                            pool: Simulator) -> None:
    pool.faults.drop_next("host.set_cpu_features")
    out = xen.crane("xen", "cpu-mask", "pool", "--apply")
    assert out.code == 1, out
    assert "dropped during host.set_cpu_features" in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("pool", [heterogeneous(settable=True, other_vendor="AuthenticAMD")], indirect=True)
def test_a_pool_mixing_cpu_vendors_is_not_masked(xen: ProjectDir, pool: Simulator) -> None:
    shown = xen.crane("xen", "cpu-mask", "pool")
    assert shown.code == 0 and "vendors differ (AuthenticAMD, GenuineIntel)" in shown.out, shown
    out = xen.crane("xen", "cpu-mask", "pool", "--apply")
    assert out.code == 1, out
    assert "mixes CPU vendors (AuthenticAMD, GenuineIntel)" in out.err and "nothing was set" in out.err
    assert pool.calls["host.set_cpu_features"] == 0


def test_a_homogeneous_pool_needs_no_mask(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    with Simulator(PoolSpec(hosts=[HostSpec("a"), HostSpec("b")])) as sim:
        monkeypatch.setenv(PASSWORD_VAR, sim.password)
        project.write_config(CONFIG.format(url=sim.url, username=sim.username, var=PASSWORD_VAR))
        out = project.crane("xen", "cpu-mask", "pool", "--apply")
        assert out.code == 0, out
        assert "none needs the mask" in out.out and sim.calls["host.set_cpu_features"] == 0


def test_an_unknown_endpoint_names_crane_toml_and_the_xenapi_endpoints(xen: ProjectDir) -> None:
    out = xen.crane("xen", "cpu-mask", "nope")
    assert out.code == 1 and "Traceback" not in out.err, out
    assert f"{xen.root / 'crane.toml'}: stack 'main' has no endpoint 'nope' (its xenapi endpoints: pool)" in out.err


def test_a_libvirt_endpoint_is_named_with_its_line_in_crane_toml(xen: ProjectDir) -> None:
    out = xen.crane("xen", "cpu-mask", "default")
    assert out.code == 1 and "Traceback" not in out.err, out
    assert f"{xen.root / 'crane.toml'}:2: endpoint 'default' of stack 'main' is a libvirt endpoint" in out.err
    assert 'type = "xenapi"' in out.err


def test_a_missing_password_names_its_key_in_crane_toml(xen: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR)
    out = xen.crane("xen", "cpu-mask", "pool")
    assert out.code == 1 and "Traceback" not in out.err, out
    assert f"crane.toml:8: stacks.main.providers.pool.password_env: the environment variable {PASSWORD_VAR}" in out.err


def test_the_mask_of_hosts_reporting_different_numbers_of_words_counts_the_missing_ones_as_zero() -> None:
    hosts = {"r1": {"name_label": "a", "uuid": "u1", "cpu_info": {"features": "0000000f-000000ff"}},
             "r2": {"name_label": "b", "uuid": "u2", "cpu_info": {"features": "00000003-000000f0-00000001"}},
             "r3": {"name_label": "c", "uuid": "u3", "cpu_info": {}}}
    cpus = pool_cpus(hosts)
    assert cpus.mask == "00000003-000000f0"
    assert [(h.name, h.mask) for h in cpus.hosts] == [("a", "00000003-000000f0"),
                                                      ("b", "00000003-000000f0-00000000"), ("c", None)]
    mask = common_mask(hosts)
    assert mask is not None and (mask.mask, mask.needing) == (cpus.mask, ("a", "b"))


def test_the_default_endpoint_written_on_the_stack_is_named_default(project: ProjectDir, pool: Simulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, pool.password)
    project.write_config(f"""
        [stacks.main]
        file = "stacks/main.py"
        provider = "xenapi"
        uri = "{pool.url}"
        password_env = "{PASSWORD_VAR}"
    """)
    out = project.crane("xen", "cpu-mask", "default", "--json")
    assert out.code == 0, out
    assert json.loads(out.out)["needing"] == ["newer-1", "other-1"]
