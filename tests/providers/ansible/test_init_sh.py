"""crane_iac/appdomain/files/init.sh as PID 1 of a container made of namespaces, as libvirt's LXC driver makes an app
domain's (this host's / read-only, tmpfs at /run, /root, /tmp, /var/log, /var/tmp, its own network reached over a veth
pair): root logs in over SSH with crane's key, the web role runs there with its real directories, and PID 1 reaps
orphans. The lead proves the same in real LXC containers."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crane_iac.appdomain.component import INIT as appdomain_init
from crane_iac.appdomain.component import init_script
from crane_iac.objects import Owner
from crane_iac.providers.ansible import AnsibleProvider
from crane_iac.providers.base import CreateRequest, UpdateRequest
from tests.providers.ansible.conftest import OWNER, PLAYBOOKS, children_of
from tests.providers.ansible.test_appdomain_playbooks import STAND_IN_APP
from tests.waiting import wait_until

#: the container's init as AppDomain gives it: the host's /bin/sh running init.sh's text from CRANE_INIT (a path of
#: crane's checkout would not do: under /tmp it is hidden by the container's own tmpfs)
INIT = shlex.join(appdomain_init)
HOST_SIDE, GUEST, PEER = "crane-t-init", "10.254.77.2", "10.254.77.1"
#: what libvirt-lxc does before it execs the container's init, done here by the first process of the namespaces
STAGE0 = f"""set -e
mount --make-rprivate /
for d in /run /root /tmp /var/log /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
mount -o remount,bind,ro /
exec env -i CRANE_AUTHORIZED_KEY="$CRANE_AUTHORIZED_KEY" CRANE_INIT="$CRANE_INIT" {INIT}
"""


@dataclass
class Container:
    init_pid: int  # PID 1 of the namespaces, as this host numbers it
    provider: AnsibleProvider
    console: Path

    def processes(self) -> dict[int, tuple[str, int]]:
        """The container's processes: pid → (state, parent), as this host sees them."""
        found: dict[int, tuple[str, int]] = {}
        todo = [self.init_pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                found[pid] = (fields[0], int(fields[1]))
                todo.extend(children_of(pid))
        return found


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def container_running_init_sh(tmp_path: Path) -> Iterator[Container]:
    """init.sh as PID 1 in new PID, mount and network namespaces; killed (and with it everything in them) after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes namespaces, mounts and a veth pair")
    provider = AnsibleProvider(reaches_guests=True, key_dir=tmp_path / "keys", project_dir=tmp_path)
    key = provider.create(CreateRequest("ssh_key", "init-key", {"path": None, "type": "ed25519"}, OWNER))
    console = tmp_path / "console.log"
    with console.open("w") as out:
        unshare = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--net", "--mount-proc", "sh", "-c",
                                    STAGE0], env={**os.environ, "CRANE_AUTHORIZED_KEY": key.outputs["public_key"],
                                                  "CRANE_INIT": init_script()},
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    init_pid = 0
    try:
        def children() -> list[int]:
            assert unshare.poll() is None, console.read_text()
            return children_of(unshare.pid)

        init_pid = wait_until(children, 10, "the container's init", every=0.02, detail=console.read_text)[0]
        _ip("link", "add", HOST_SIDE, "type", "veth", "peer", "name", "eth0", "netns", str(init_pid))
        _ip("addr", "add", f"{PEER}/30", "dev", HOST_SIDE)
        _ip("link", "set", HOST_SIDE, "up")
        inside = ["nsenter", "-t", str(init_pid), "-n", "ip"]
        for args in (["addr", "add", f"{GUEST}/30", "dev", "eth0"], ["link", "set", "eth0", "up"],
                     ["link", "set", "lo", "up"]):
            subprocess.run([*inside, *args], check=True, capture_output=True, timeout=10)
        yield Container(init_pid, provider, console)
    finally:
        if init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)  # PID 1 gone, the kernel kills the rest of its namespace
        unshare.wait(timeout=20)
        with contextlib.suppress(subprocess.CalledProcessError):  # gone with the namespace, normally
            _ip("link", "del", HOST_SIDE)


def _configuration(container: Container, playbook: str, groups: list[str], **vars: Any) -> dict[str, Any]:
    return {"playbook": playbook, "digest": "", "key": "init-key", "user": "root",
            "hosts": [{"name": "shop-web-1", "address": GUEST, "groups": groups, "vars": {}}],
            "vars": vars, "files": {}, "validate": {}}


def test_init_sh_lets_crane_in_runs_the_web_role_and_reaps_orphans(container_running_init_sh: Container,
                                                                     tmp_path: Path) -> None:
    container = container_running_init_sh
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.py").write_text(STAND_IN_APP.replace("VERSION", "in the container"))
    web = _configuration(container, "crane:appdomain/web.yml", ["web"], crane_files_dir=str(files),
                         dsn="host=10.254.77.3 dbname=shop user=shop")
    owner = Owner("test", "appdomain.shop/configuration.web")
    live = container.provider.create(CreateRequest("configuration", "shop-web", web, owner))  # the run waits for sshd
    assert live.outputs == {"ran": True, "changed": 1, "hosts": ["shop-web-1"]}
    assert urllib.request.urlopen(f"http://{GUEST}:8080/", timeout=5).read() == b"in the container"
    assert container.provider.update(UpdateRequest("configuration", "shop-web", web, web)).outputs["changed"] == 0
    # the app runs as nobody under runsv, which runs detached under PID 1 (runsvdir, which init.sh became)
    assert Path(f"/proc/{container.init_pid}/cmdline").read_bytes().split(b"\0")[0] == b"runsvdir"
    processes = container.processes()
    app = [pid for pid in processes if b"app.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(app) == 1 and Path(f"/proc/{app[0]}/status").read_text().count("\t65534\t") >= 1
    # orphans: a task leaves a child behind that outlives its parent, so PID 1 adopts it; ended, PID 1 reaps it
    orphans = _configuration(container, str(PLAYBOOKS / "orphan.yml"), ["test"])
    container.provider.create(CreateRequest("configuration", "orphans", orphans, owner))

    def argv(pid: int) -> list[bytes]:
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        return []

    adopted = [pid for pid, (_, parent) in container.processes().items()
               if parent == container.init_pid and argv(pid) == [b"sleep", b"infinity"]]
    assert len(adopted) == 1, container.processes()
    os.kill(adopted[0], signal.SIGTERM)

    def zombies() -> list[int]:
        return [pid for pid, (state, _) in container.processes().items() if state == "Z"]

    # runsvdir reaps in its loop, which may sleep 5 s between rounds
    wait_until(lambda: adopted[0] not in container.processes(), 15, "PID 1 reaping the ended orphan", every=0.2,
               detail=container.processes)
    assert zombies() == []
    # the root is read-only, the tmpfs not: what the roles wrote is in the container's /run only
    assert not Path("/run/crane/app/app.py").exists()


def test_the_storage_role_makes_the_cluster_and_the_apps_database_once(container_running_init_sh: Container) -> None:
    """PostgreSQL 15 of this host, its cluster on the data volume (here the container's /var/tmp), answering the
    app's user from the domain's network without a password; a second run changes nothing."""
    import psycopg

    container = container_running_init_sh
    storage = _configuration(container, "crane:appdomain/storage.yml", ["storage"], data_dir="/var/tmp/data",
                             db_name="shop", db_user="shop", subnet=f"{PEER}/30")
    owner = Owner("test", "appdomain.shop/configuration.storage")
    # the run waits for sshd
    live = container.provider.create(CreateRequest("configuration", "shop-storage", storage, owner))
    assert live.outputs["changed"] == 1
    with psycopg.connect(host=GUEST, dbname="shop", user="shop", connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("shop", "shop")
        conn.execute("CREATE TABLE orders (id int)")
        conn.commit()
    assert container.provider.update(UpdateRequest("configuration", "shop-storage", storage,
                                                   storage)).outputs["changed"] == 0
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(host=GUEST, dbname="postgres", user="postgres", connect_timeout=5)


HAPROXY_CFG = """\
global
    stats socket /run/crane/haproxy/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind {guest}:80
    default_backend web
backend web
{servers}"""
def test_the_lb_role_starts_haproxy_then_changes_servers_without_a_reload(container_running_init_sh: Container,
                                                                          tmp_path: Path) -> None:
    container = container_running_init_sh
    one = [{"name": "web-1", "address": "10.254.77.9", "port": 8080}]
    # these servers are addresses only (nothing answers): they join without a readiness check
    lb = _configuration(container, "crane:appdomain/lb.yml", ["lb"], servers=one, ready_path="")
    lb["files"] = {"haproxy.cfg": HAPROXY_CFG.format(guest=GUEST, servers="    server web-1 10.254.77.9:8080\n")}
    owner = Owner("test", "appdomain.shop/configuration.lb")
    # the run waits for the host's sshd itself
    live = container.provider.create(CreateRequest("configuration", "shop-lb", lb, owner))
    assert live.outputs["changed"] == 1
    with socket.create_connection((GUEST, 80), timeout=5):
        pass
    haproxy = _haproxy_pids(container)
    assert container.provider.update(UpdateRequest("configuration", "shop-lb", lb, lb)).outputs["changed"] == 0
    two = [*one, {"name": "web-2", "address": "10.254.77.10", "port": 8080}]
    more = {**lb, "vars": {**lb["vars"], "servers": two},
            "files": {"haproxy.cfg": lb["files"]["haproxy.cfg"] + "    server web-2 10.254.77.10:8080\n"}}
    assert container.provider.update(UpdateRequest("configuration", "shop-lb", lb, more)).outputs["changed"] == 1
    # the running HAProxy has web-2 through its runtime API (haproxy_servers.py), and wrote the state file
    admin = f"/proc/{container.init_pid}/root/run/crane/haproxy/admin.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(admin)
        sock.sendall(b"show servers state web\n")
        state = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    assert {line.split()[3] for line in state.splitlines()[2:] if line.strip()} == {"web-1", "web-2"}
    assert Path(f"/proc/{container.init_pid}/root/run/crane/haproxy/servers.state").is_file()
    assert _haproxy_pids(container) == haproxy  # neither restarted nor reloaded
    other = {**more, "files": {"haproxy.cfg": more["files"]["haproxy.cfg"].replace("5s", "6s")}}
    assert container.provider.update(UpdateRequest("configuration", "shop-lb", more, other)).outputs["changed"] == 1
    wait_until(lambda: _haproxy_pids(container)[1] != haproxy[1], 10, "a new HAProxy worker", every=0.1)
    now = _haproxy_pids(container)
    assert now[0] == haproxy[0] and now[1] != haproxy[1]  # reloaded: the master stays, a new worker serves


def _haproxy_pids(container: Container) -> tuple[int, int]:
    """haproxy's master (the one runsv started) and its newest worker."""
    processes = container.processes()
    pids = [pid for pid in processes if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"haproxy")]
    master = next(pid for pid in pids if processes[pid][1] not in pids)
    return master, max(pid for pid in pids if pid != master)
