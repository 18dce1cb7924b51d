"""Configurations run for real: ansible-runner and ansible-playbook against the test's own sshd on loopback, whose
tasks write into the test's directory on this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from crane_iac.errors import ProviderError
from crane_iac.objects import Owner, Reach
from crane_iac.providers.ansible import AnsibleProvider
from crane_iac.providers.ansible.configurations import NO_GUESTS, RUNS_AGAIN
from crane_iac.providers.base import CreateRequest, UpdateRequest
from tests.conftest import REPO
from tests.providers.ansible.conftest import LoopbackHost
from tests.waiting import wait_until

OWNER = Owner("test", "configuration.loop")


def test_a_run_changes_the_host_once_and_a_second_run_changes_nothing(sshd_on_loopback: LoopbackHost,
                                                                       tmp_path: Path) -> None:
    host, target = sshd_on_loopback, tmp_path / "target"
    target.mkdir()
    props = host.configuration("write.yml", greeting="hello", target_dir=str(target))
    props["files"] = {"motd": "rendered by crane\n"}
    first = host.provider.create(CreateRequest("configuration", "loop-config", props, OWNER))
    assert first.outputs == {"ran": True, "changed": 2, "hosts": ["loop"]}
    assert (target / "greeting.txt").read_text() == "hello\n"
    assert (target / "motd").read_text() == "rendered by crane\n"
    assert "loop: write the greeting: started" in host.progress
    assert "loop: write the greeting: changed" in host.progress
    host.progress.clear()
    again = host.provider.update(UpdateRequest("configuration", "loop-config", props, props))
    assert again.outputs == {"ran": True, "changed": 0, "hosts": ["loop"]}
    assert "loop: write the greeting: ok" in host.progress
    changed = {**props, "vars": {**props["vars"], "greeting": "bonjour"}}
    assert host.provider.update(UpdateRequest("configuration", "loop-config", props, changed)).outputs["changed"] == 1
    assert (target / "greeting.txt").read_text() == "bonjour\n"
    assert not list(Path(tempfile.gettempdir()).glob(f"crane-ansible-{os.getpid()}-*"))  # its directory is gone


def test_a_failing_task_names_the_host_and_the_task(sshd_on_loopback: LoopbackHost) -> None:
    props = sshd_on_loopback.configuration("fail.yml", leak="")
    with pytest.raises(ProviderError) as caught:
        sshd_on_loopback.provider.create(CreateRequest("configuration", "loop-config", props, OWNER))
    assert str(caught.value) == "configuration of loop failed at task 'refuse on purpose': exit status 3: disk on fire"
    assert "loop: refuse on purpose: failed" in sshd_on_loopback.progress


def test_no_private_key_reaches_outputs_errors_or_progress(sshd_on_loopback: LoopbackHost, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "test-key"
    secret = key_file.read_text()
    body = [line for line in secret.splitlines() if "PRIVATE KEY" not in line]
    key = sshd_on_loopback.provider.read_all()[0]
    with pytest.raises(ProviderError) as caught:  # a task that prints the private key to stderr
        sshd_on_loopback.provider.create(CreateRequest("configuration", "loop-config",
                                         sshd_on_loopback.configuration("fail.yml", leak=str(key_file)), OWNER))
    seen = "\n".join([str(caught.value), *sshd_on_loopback.progress, repr(key.outputs), repr(key.properties)])
    assert "disk on fire" in str(caught.value)
    assert "PRIVATE KEY" not in seen
    assert not any(line in seen for line in body)


def test_an_unreachable_host_is_an_error_naming_it(sshd_on_loopback: LoopbackHost, tmp_path: Path) -> None:
    props = sshd_on_loopback.configuration("write.yml", greeting="x", target_dir="/nonexistent")
    props["hosts"][0]["port"] = 1  # nothing listens there
    provider = AnsibleProvider(reaches_guests=True, key_dir=tmp_path / "keys", project_dir=tmp_path, ssh_timeout=0.5)
    provider.create(CreateRequest("ssh_key", props["key"], {"path": None, "type": "ed25519"}, OWNER))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"^configuration of loop: nothing answers on 127\.0\.0\.1:1 after 0 s "
                                            r"\(Connection refused\); is the host running"):
        provider.create(CreateRequest("configuration", "loop-config", props, OWNER))
    assert time.monotonic() - started < 5  # it waited for the port, not for Ansible's own timeouts


def test_a_run_killed_midway_leaves_nothing_a_rerun_cannot_converge(sshd_on_loopback: LoopbackHost,
                                                                     tmp_path: Path) -> None:
    """crane SIGKILLed in the middle of a run: the re-run sweeps what the run left (its directory, its SSH master
    connection), runs the playbook to the end, and the run after that changes nothing."""
    host, target = sshd_on_loopback, tmp_path / "target"
    target.mkdir()
    props = host.configuration("slow.yml", target_dir=str(target))
    script = ("import json, sys; from pathlib import Path; from crane_iac.objects import Owner; "
              "from crane_iac.providers.ansible import AnsibleProvider; "
              "from crane_iac.providers.base import CreateRequest; "
              "p = AnsibleProvider(reaches_guests=True, key_dir=Path(sys.argv[1]), project_dir=Path(sys.argv[1])); "
              "p.create(CreateRequest('configuration', 'loop-config', json.loads(sys.argv[2]), Owner('test', 'c')))")
    crane = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "keys"), json.dumps(props)],
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    try:
        def started() -> bool:
            assert crane.poll() is None, f"the run exited ({crane.returncode}) before its second task"
            return (target / "started").exists()

        wait_until(started, 60, "the run reaching its second task")
        left = next(Path(tempfile.gettempdir()).glob(f"crane-ansible-{crane.pid}-*"))
        crane.send_signal(signal.SIGKILL)
    finally:
        crane.wait(timeout=10)
        (target / "release").touch()  # the remote loop the killed run left behind ends
    assert (target / "first.txt").exists() and not (target / "second.txt").exists()
    assert left.is_dir()
    rerun = host.provider.create(CreateRequest("configuration", "loop-config", props, OWNER))
    assert rerun.outputs["changed"] == 1
    assert (target / "second.txt").read_text() == "two\n"
    assert not left.exists()
    # ansible-playbook's hang-up, the ssh master
    wait_until(lambda: _processes_naming(left) == [], 10, f"no process naming {left}",
               detail=lambda: _processes_naming(left))
    assert host.provider.update(UpdateRequest("configuration", "loop-config", props, props)).outputs["changed"] == 0


def _processes_naming(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def test_without_guests_a_configuration_records_that_it_did_not_run(tmp_path: Path) -> None:
    provider = AnsibleProvider(reaches_guests=False, key_dir=tmp_path / "keys", project_dir=tmp_path)
    props = {"playbook": "crane:appdomain/web.yml", "digest": "x", "key": "missing-key", "user": "root",
             "hosts": [{"name": "shop-web-1", "address": "192.0.2.1", "groups": ["web"], "vars": {}}],
             "vars": {}, "files": {}, "validate": {}}
    assert provider.remark("configuration", props) == NO_GUESTS
    assert provider.remark("ssh_key", {"path": None, "type": "ed25519"}) is None
    # no key, no host: nothing is tried
    live = provider.create(CreateRequest("configuration", "shop-web", props, OWNER))
    assert live.outputs == {"ran": False, "skipped": NO_GUESTS}
    assert provider.update(UpdateRequest("configuration", "shop-web", props, {**props,
                                         "digest": "y"})).outputs["ran"] is False
    reaching = AnsibleProvider(reaches_guests=True, key_dir=tmp_path / "keys", project_dir=tmp_path)
    assert reaching.remark("configuration", props) is None
    with pytest.raises(ProviderError, match="ssh key 'missing-key' is not in"):
        reaching.create(CreateRequest("configuration", "shop-web", props, OWNER))


def test_any_change_runs_the_playbook_again_and_nothing_replaces_it(tmp_path: Path) -> None:
    provider = AnsibleProvider(reaches_guests=True, key_dir=tmp_path, project_dir=tmp_path)
    before = {"playbook": "crane:appdomain/web.yml", "digest": "a", "hosts": [], "vars": {"port": 80}}
    after = {**before, "digest": "b", "vars": {"port": 81}, "playbook": "/srv/site.yml"}
    changes = provider.diff("configuration", before, after)
    assert [c.name for c in changes] == ["digest", "playbook", "vars"]
    assert {(c.reach, c.note) for c in changes} == {(Reach.LIVE, RUNS_AGAIN)}
    assert provider.diff("configuration", before, dict(before)) == []
    assert provider.listed_kinds == frozenset({"ssh_key"})


HAPROXY_OK = """\
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:8080
    default_backend web
backend web
    server web-1 10.80.0.12:8080
"""


def test_check_runs_the_validate_commands_and_reports_their_errors(tmp_path: Path) -> None:
    provider = AnsibleProvider(reaches_guests=False, key_dir=tmp_path, project_dir=tmp_path)
    props = {"playbook": "crane:appdomain/lb.yml", "files": {"haproxy.cfg": HAPROXY_OK},
             "validate": {"haproxy.cfg": ["haproxy", "-c", "-f", "{path}"]}}
    assert provider.check("configuration", props) == []
    broken = {**props, "files": {"haproxy.cfg": HAPROXY_OK.replace("mode http", "mode htttp")}}
    problems = provider.check("configuration", broken)
    assert len(problems) == 1
    assert problems[0].startswith("validate haproxy.cfg: `haproxy -c -f {path}` failed (exit status 1): ")
    assert "haproxy.cfg:2" in problems[0] and "htttp" in problems[0]
    assert "crane-validate-" not in problems[0]  # the temporary path reads as the file's name
    missing = {**props, "playbook": "/nonexistent/site.yml",
               "validate": {"haproxy.cfg": ["no-such-validator", "{path}"], "other.cfg": ["true"]}}
    assert provider.check("configuration", missing) == [
        "playbook '/nonexistent/site.yml': no such file /nonexistent/site.yml",
        "validate haproxy.cfg: 'no-such-validator' is not installed on this machine; crane runs the check where it "
        "plans",
        "validate other.cfg: no such file among the configuration's files (haproxy.cfg)"]
