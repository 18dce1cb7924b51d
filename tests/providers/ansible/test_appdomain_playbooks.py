"""The app domain's playbooks: each passes ansible-playbook's syntax check, and the web role runs for real against
the test's sshd on loopback, with its directories moved into the test's (run_dir, log_dir) and a stand-in app (a
named fake: the real app.py needs the storage server; the lead proves the roles in LXC containers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crane_iac.autoscaler.agents import mac
from crane_iac.errors import ProviderError
from crane_iac.objects import Owner
from crane_iac.projectkey import agent_key_name, derived_key
from crane_iac.providers.ansible import runs
from crane_iac.providers.base import CreateRequest, UpdateRequest
from crane_iac.resources.playbooks import playbook_digest, resolve, shipped_dir
from tests.providers.ansible.conftest import LoopbackHost, free_port

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
OWNER = Owner("test", "appdomain.shop/configuration.web")

STAND_IN_APP = '''\
"""A stand-in for crane's app.py: answers /healthz with 200 and / with its version."""
import argparse, http.server
parser = argparse.ArgumentParser()
parser.add_argument("--bind"); parser.add_argument("--port", type=int); parser.add_argument("--dsn")
args = parser.parse_args()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/healthz" else b"VERSION"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()
'''


@pytest.mark.parametrize("name", ["lb", "web", "storage"])
def test_each_playbook_passes_the_syntax_check(name: str) -> None:
    path = resolve(f"crane:appdomain/{name}.yml", Path.cwd())
    done = subprocess.run([ANSIBLE_PLAYBOOK, "--syntax-check", "-i", "localhost,", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (path.parent / "roles" / name / "templates" / "converge.sh.j2").is_file()


def test_the_digest_follows_the_playbook_its_roles_and_shared_files(tmp_path: Path) -> None:
    """A user's playbook: its own text, the roles it names (not the others beside it), playbook-level templates/."""
    (tmp_path / "roles" / "a" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "b" / "tasks").mkdir(parents=True)
    (tmp_path / "templates").mkdir()
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles: [a]\n")
    for path in ("roles/a/tasks/main.yml", "roles/b/tasks/main.yml", "templates/lib.sh"):
        (tmp_path / path).write_text("# 1\n")
    first = playbook_digest(str(tmp_path / "site.yml"))
    assert len(first) == 64 and playbook_digest("site.yml", tmp_path) == first
    (tmp_path / "roles/b/tasks/main.yml").write_text("# 2\n")
    assert playbook_digest(str(tmp_path / "site.yml")) == first  # role b is not the playbook's
    for path in ("roles/a/tasks/main.yml", "templates/lib.sh", "site.yml"):
        before = playbook_digest(str(tmp_path / "site.yml"))
        (tmp_path / path).write_text((tmp_path / path).read_text() + "# more\n")
        assert playbook_digest(str(tmp_path / "site.yml")) != before, path
    shipped = {name: playbook_digest(f"crane:appdomain/{name}.yml") for name in ("lb", "web", "storage")}
    assert len(set(shipped.values())) == 3


@pytest.fixture
def web_dirs(tmp_path: Path) -> Iterator[dict[str, str]]:
    """run_dir, log_dir and a files dir with the stand-in app and crane's real agent; afterwards each runsv the role
    started is told to exit (it stops its service first)."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.py").write_text(STAND_IN_APP.replace("VERSION", "v1"))
    shutil.copy(shipped_dir() / "files" / "agent.py", files / "agent.py")
    dirs = {"run_dir": str(tmp_path / "run"), "log_dir": str(tmp_path / "log"), "crane_files_dir": str(files)}
    yield dirs
    for service in (tmp_path / "run" / "services").glob("*"):
        if (service / "supervise").exists():
            subprocess.run(["sv", "-w", "10", "force-stop", str(service)], capture_output=True, timeout=30)
            subprocess.run(["sv", "exit", str(service)], capture_output=True, timeout=30)


def test_the_web_role_starts_the_app_under_runsv_and_a_second_run_changes_nothing(
        sshd_on_loopback: LoopbackHost, web_dirs: dict[str, str]) -> None:
    host, port = sshd_on_loopback, free_port()
    props = host.configuration("unused", app_port=port, app_user="root", dsn="host=127.0.0.1 dbname=shop",
                               **web_dirs)
    props["playbook"], props["hosts"][0]["groups"] = "crane:appdomain/web.yml", ["web"]
    first = host.provider.create(CreateRequest("configuration", "shop-web", props, OWNER))
    assert first.outputs == {"ran": True, "changed": 1, "hosts": ["loop"]}
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"v1"
    status = subprocess.run(["sv", "status", f"{web_dirs['run_dir']}/services/app"], capture_output=True, text=True)
    assert status.stdout.startswith("run: ")
    assert host.provider.update(UpdateRequest("configuration", "shop-web", props, props)).outputs["changed"] == 0
    assert "loop: converge the web server: ok" in host.progress
    Path(web_dirs["crane_files_dir"], "app.py").write_text(STAND_IN_APP.replace("VERSION", "v2"))
    # restarted
    assert host.provider.update(UpdateRequest("configuration", "shop-web", props, props)).outputs["changed"] == 1
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"v2"
    assert host.provider.update(UpdateRequest("configuration", "shop-web", props, props)).outputs["changed"] == 0


def test_the_web_role_runs_the_agent_beside_the_app_and_removes_it_when_it_is_no_longer_wanted(
        sshd_on_loopback: LoopbackHost, web_dirs: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With its key: the domain's, derived from the project's (made in the provider's project, tmp_path), written
    root's alone on the host and read by the agent, which MACs its answers with it; the key is in no property, no
    progress line, no service file, and in no file of the run's directory but the one crane gave the playbook."""
    host, port, agent_port, push = sshd_on_loopback, free_port(), free_port(), f"http://127.0.0.1:{free_port()}/push"
    props = host.configuration("unused", app_port=port, app_user="root", dsn="host=127.0.0.1 dbname=shop",
                               agent_port=agent_port, agent_push=push, **web_dirs)
    props["playbook"], props["hosts"][0]["groups"] = "crane:appdomain/web.yml", ["web"]
    props["secrets"] = {"agent_key_file": agent_key_name("appdomain.shop")}
    leaks: list[str] = []
    real_rmtree = runs.shutil.rmtree

    def searched_rmtree(path: Path, **options: Any) -> None:  # every file of the run's directory, at its end
        key_text = derived_key(tmp_path / ".crane", agent_key_name("appdomain.shop")).hex()
        for found in Path(path).rglob("*"):
            if found.is_file() and found.parent.name != "secrets" and key_text.encode() in found.read_bytes():
                leaks.append(str(found.relative_to(path)))
        real_rmtree(path, **options)

    monkeypatch.setattr(runs.shutil, "rmtree", searched_rmtree)
    assert host.provider.create(CreateRequest("configuration", "shop-web", props, OWNER)).outputs["changed"] == 2
    key = derived_key(tmp_path / ".crane", agent_key_name("appdomain.shop"))
    assert leaks == [] and (tmp_path / ".crane" / "project.key").stat().st_mode & 0o777 == 0o600
    written = Path(web_dirs["run_dir"], "agent.key")
    assert written.read_text() == key.hex() and written.stat().st_mode & 0o777 == 0o400
    with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/sample?nonce=ab12", timeout=5) as response:
        body, signature = response.read(), response.headers["X-Crane-Mac"]
    sample = json.loads(body)
    assert sample["host"] == "loop" and 0 < sample["memory"] < 1  # named as the inventory names the host
    assert signature == mac(key, "pull", body, "ab12")
    agent = Path(web_dirs["run_dir"], "services", "agent")
    status = subprocess.run(["sv", "status", str(agent)], capture_output=True, text=True)
    assert status.stdout.startswith("run: ")
    assert (agent / "run").read_text() == (  # the receiver is down: the agent runs all the same
        f"#!/bin/sh\nexec 2>&1\nexec python3 {web_dirs['run_dir']}/agent/agent.py --bind 127.0.0.1 "
        f"--port {agent_port} --name loop --push {push} --key-file {written} --user root\n")
    assert key.hex() not in json.dumps(props) + "\n".join(host.progress)
    assert "loop: the agent's key: ok" in host.progress  # (a no_log task's event says nothing of it, "changed" either)
    assert host.provider.update(UpdateRequest("configuration", "shop-web", props, props)).outputs["changed"] == 0
    without = {**props, "vars": {k: v for k, v in props["vars"].items() if not k.startswith("agent_")}, "secrets": {}}
    assert host.provider.update(UpdateRequest("configuration", "shop-web", props, without)).outputs["changed"] == 1
    assert not agent.exists() and not written.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/sample", timeout=5)
    assert host.provider.update(UpdateRequest("configuration", "shop-web", without, without)).outputs["changed"] == 0
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"v1"


def test_a_web_server_that_never_answers_fails_naming_the_host_the_task_and_the_apps_words(
        sshd_on_loopback: LoopbackHost, web_dirs: dict[str, str]) -> None:
    Path(web_dirs["crane_files_dir"], "app.py").write_text("import sys\nsys.exit('no database at ' + sys.argv[-1])\n")
    props = sshd_on_loopback.configuration("unused", app_port=free_port(), app_user="root", dsn="host=192.0.2.9",
                                           ready_timeout=2, **web_dirs)
    props["playbook"], props["hosts"][0]["groups"] = "crane:appdomain/web.yml", ["web"]
    with pytest.raises(ProviderError) as caught:
        sshd_on_loopback.provider.create(CreateRequest("configuration", "shop-web", props, OWNER))
    message = str(caught.value)
    assert message.startswith("configuration of loop failed at task 'converge the web server': exit status 1: ")
    assert "did not answer within 2 s" in message and "no database at host=192.0.2.9" in message


def test_the_shipped_files_are_where_the_playbooks_look() -> None:
    assert (shipped_dir() / "playbooks" / "templates" / "crane_service.sh").is_file()
    assert (shipped_dir() / "files" / "init.sh").is_file()
