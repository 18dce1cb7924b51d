"""An app domain for real: 1 HAProxy + 3 web servers + 1 PostgreSQL, each an LXC container on lxc:///system,
configured by ansible-runner over SSH. Requests go client → HAProxy → a web server → the database; the web tier is
resized under load with no failed request; drift, a SIGKILLed configuration run, a failing playbook and destroy.
The tests of this module run in order on one applied stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from crane_iac.resources.container import nic_device
from tests.conftest import ProjectDir, assert_clean_error
from tests.real.host import LXC_URI, LxcHost
from tests.waiting import wait_until

PREFIX = "cra-"
NET = "10.235.0"
LB = f"{NET}.10"
STORAGE = f"{NET}.11"
STACK = f'''
from pathlib import Path
from crane_iac import AppDomain, Configuration, Network, Storage, StoragePool, WebTier, variable

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="/var/lib/{PREFIX}pool")
shop = AppDomain("{PREFIX}shop", network=net, web=WebTier(size=variable("web"), min=1, max=6),
                 storage=Storage(pool=pool))
if variable("broken"):
    Configuration("broken", playbook=str(Path(__file__).parent / "broken.yml"), hosts=[shop.lb_host],
                  key=shop.key, group="lb")
'''
BROKEN = """
- hosts: lb
  gather_facts: false
  tasks:
    - name: refuse on purpose
      ansible.builtin.raw: "echo 'disk on fire' >&2; exit 3"
"""


def web(i: int) -> str:
    return f"{PREFIX}shop-web-{i}"


def get(url: str, timeout: float = 5.0) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def served_by(count: int) -> Counter[str]:
    return Counter(str(get(f"http://{LB}/")["host"]) for _ in range(count))


class Load:
    """A load generator on loopback: threads sending requests through HAProxy until stopped, counting failures."""

    def __init__(self, threads: int = 3, url: str = f"http://{LB}/") -> None:
        self.url = url
        self.ok: Counter[str] = Counter()
        self.failed: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.ok[str(get(self.url, timeout=15)["host"])] += 1
            except Exception as exc:  # every kind of failure counts: refused, reset, timeout, 5xx
                self.failed.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def answered(self) -> int:
        """Requests answered so far (those that failed are in ``failed``)."""
        return sum(self.ok.values())

    def run_through(self, requests: int, what: str, timeout: float = 60) -> None:
        """Return once ``requests`` more requests than now have been answered: the load ran through ``what``."""
        start = self.answered()
        wait_until(lambda: self.answered() >= start + requests, timeout, f"{requests} requests answered {what}",
                   detail=lambda: f"{self.answered() - start} answered, {len(self.failed)} failed {self.failed[-3:]}")


def ok(project: ProjectDir, *args: str) -> str:
    result = project.crane(*args)
    assert result.code == 0, result.out + result.err
    return result.out + result.err


def stats(server: str) -> str:
    """The server's status on HAProxy's stats page (UP, DOWN, MAINT, ...)."""
    with urllib.request.urlopen(f"http://{LB}:8404/stats;csv", timeout=5) as response:
        for line in response.read().decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "web" and fields[1] == server:
                return fields[17]
    return "absent"


@pytest.fixture(scope="module")
def shop(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    project = ProjectDir(tmp_path_factory.mktemp("appdomain"))
    project.write_config(f"""
        [stacks.shop]
        file = "stacks/shop.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5
        [stacks.shop.vars]
        web = {{ type = "int", default = 3 }}
        broken = {{ type = "bool", default = false }}
    """)
    project.write_stack(STACK, "shop.py")
    (project.root / "stacks" / "broken.yml").write_text(BROKEN)
    try:
        out = ok(project, "apply", "--auto-approve")
        print(out[-2000:])
        yield project
    finally:
        project.crane("destroy", "--auto-approve")
        lxc_host.sweep(PREFIX)


def test_requests_reach_every_web_server_and_the_apps_writes_land_in_the_database(shop: ProjectDir) -> None:
    hosts = served_by(30)
    assert set(hosts) == {web(1), web(2), web(3)}, hosts
    last = get(f"http://{LB}/")
    with psycopg.connect(host=STORAGE, dbname="app", user="app", connect_timeout=5) as conn:
        stored = conn.execute("SELECT value FROM crane_counter").fetchone()
    assert stored is not None and stored[0] == last["counter"] >= 31  # every request above wrote the counter


def test_a_second_apply_is_a_no_op_that_runs_no_configuration(shop: ProjectDir) -> None:
    out = ok(shop, "apply", "--auto-approve")
    assert "No changes" in out and "configuring" not in out, out
    assert shop.crane("plan", "--detailed-exitcode").code == 0


def test_the_web_tier_grows_and_shrinks_under_load_without_a_failed_request(shop: ProjectDir) -> None:
    with Load() as load:
        load.run_through(30, "before the tier grows")  # the load is under way when the apply starts
        grown = ok(shop, "apply", "--auto-approve", "--var", "web=5")
        # the new servers pass their health checks and take requests
        wait_until(lambda: {web(4), web(5)} <= set(load.ok), 60, "web-4 and web-5 answering the load",
                   detail=lambda: dict(load.ok))
        shrunk = ok(shop, "apply", "--auto-approve", "--var", "web=2")
        load.run_through(30, "after the tier shrank")  # the load goes on to the two servers left
    print(f"load: {load.answered()} requests, {len(load.failed)} failed, by host {dict(load.ok)}")
    assert load.failed == [], load.failed[:5]
    assert "container.web-1" not in grown and "configuration.web-1" not in grown  # the others were not touched
    assert "configuration.lb: updated" in shrunk and "container.web-3: deleted" in shrunk
    assert set(served_by(20)) == {web(1), web(2)}


def test_a_web_container_destroyed_behind_cranes_back_is_taken_out_then_repaired(
        shop: ProjectDir, lxc_host: LxcHost) -> None:
    with Load() as load:
        dom = lxc_host.conn.lookupByName(web(2))
        dom.destroy()
        dom.undefine()
        # the health check takes it out
        wait_until(lambda: stats(web(2)) == "DOWN", 30, "HAProxy reporting web-2 DOWN", detail=lambda: stats(web(2)))
        plan = shop.crane("plan", "--detailed-exitcode", "--var", "web=2")
        assert plan.code == 2, plan.out + plan.err
        drift, _, changes = plan.out.partition("crane will make these changes")
        assert "! appdomain.cra-shop/container.web-2  deleted outside crane" in drift, drift
        assert "+ appdomain.cra-shop/container.web-2" in changes, changes
        assert "~ appdomain.cra-shop/configuration.web-2" in changes, changes  # a new host is configured again
        ok(shop, "apply", "--auto-approve", "--var", "web=2")
        wait_until(lambda: stats(web(2)) == "UP", 30, "HAProxy reporting the new web-2 UP",
                   detail=lambda: stats(web(2)))
    print(f"load: {load.answered()} requests, {len(load.failed)} failed")
    assert load.failed == [], load.failed[:5]  # HAProxy's retries sent the dead server's requests elsewhere
    assert set(served_by(20)) == {web(1), web(2)}
    assert shop.crane("plan", "--detailed-exitcode", "--var", "web=2").code == 0


def test_a_web_container_stopped_behind_cranes_back_is_started_and_configured_again(
        shop: ProjectDir, lxc_host: LxcHost) -> None:
    lxc_host.conn.lookupByName(web(1)).destroy()  # stopped: it will come back with empty tmpfs, no app running
    plan = shop.crane("plan", "--detailed-exitcode", "--var", "web=2")
    assert plan.code == 2, plan.out + plan.err
    assert "~ appdomain.cra-shop/container.web-1  running: false → true" in plan.out, plan.out
    assert "~ appdomain.cra-shop/configuration.web-1" in plan.out, plan.out  # its app must be set up again
    ok(shop, "apply", "--auto-approve", "--var", "web=2")
    wait_until(lambda: stats(web(1)) == "UP", 30, "HAProxy reporting web-1 UP again", detail=lambda: stats(web(1)))
    assert set(served_by(20)) == {web(1), web(2)}


def test_a_sigkill_during_the_configuration_run_converges_on_the_next_apply(shop: ProjectDir) -> None:
    child = subprocess.Popen([sys.executable, "-m", "crane_iac", "apply", "--auto-approve", "--var", "web=3"],
                             cwd=shop.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if f"configuring {web(3)}" in line:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(60)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL, "".join(seen)
    out = ok(shop, "apply", "--auto-approve", "--var", "web=3")
    assert "configuration.web-3" in out, out
    assert shop.crane("plan", "--detailed-exitcode", "--var", "web=3").code == 0
    assert set(served_by(30)) == {web(1), web(2), web(3)}


def test_a_failing_playbook_fails_the_apply_naming_host_and_task_and_loses_nothing(shop: ProjectDir) -> None:
    before = ok(shop, "state", "list")
    result = shop.crane("apply", "--auto-approve", "--var", "web=3", "--var", "broken=true")
    assert_clean_error(result, f"configuration of {PREFIX}shop-lb failed at task 'refuse on purpose'", "disk on fire")
    assert ok(shop, "state", "list") == before  # nothing recorded for the failed run, nothing else changed
    assert set(served_by(10)) <= {web(1), web(2), web(3)}


def test_bad_input_is_refused_before_anything_changes(shop: ProjectDir) -> None:
    result = shop.crane("plan", "--var", "web=9")
    assert_clean_error(result, "shop.py:7: WebTier: web.size 9 is outside [min 1, max 6]")


def test_destroy_leaves_no_container_veth_bridge_cgroup_or_process(shop: ProjectDir, lxc_host: LxcHost) -> None:
    names = ["lb", "storage", *(f"web-{i}" for i in (1, 2, 3))]
    devices = [nic_device(f"{PREFIX}shop-{n}", 0) for n in names]
    bridge = json.loads(ok(shop, "state", "show", f"network.{PREFIX}net"))["outputs"]["bridge_name"]
    running = lxc_host.leftovers(PREFIX, [*devices, bridge])
    assert len(running["supervisors"]) == 5 and len(running["veths"]) == 6, running
    ok(shop, "destroy", "--auto-approve", "--var", "web=3")
    assert lxc_host.names(PREFIX) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert lxc_host.leftovers(PREFIX, [*devices, bridge]) == {"veths": [], "cgroups": [], "supervisors": []}
    assert not Path(f"/var/lib/{PREFIX}pool").exists()
    def inside() -> list[str]:
        """What ran in the containers (sshd, runsv, haproxy, the app, postgres), or crane's SSH to them."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "/run/crane/" in argv or "appdomain/files/init.sh" in argv:
                found.append(argv)
        return found

    # an SSH master connection crane told to exit (ssh -O exit) is gone a moment after, not at once
    wait_until(lambda: not inside(), 15, "no process of the containers or crane's SSH to them", detail=inside)
    assert not list((shop.root / ".crane").rglob(f"{PREFIX}shop-key"))  # the key crane made went with the domain
