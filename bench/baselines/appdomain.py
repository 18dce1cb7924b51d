"""Baseline for an app domain: what a hand-written libvirt-python + ansible-runner script does for crane's
5-container app domain (a load balancer, three web servers, a storage server), without crane.

    python appdomain.py up PREFIX NET3 WORKDIR     # e.g. up cbn-b1- 10.93.1 /tmp/x: one JSON line of phase times
    python appdomain.py down PREFIX WORKDIR        # destroys and undefines what `up` made, removes WORKDIR

`up` makes an SSH key (ssh-keygen), defines and starts an isolated network without DHCP (STP off, as crane's) and
five LXC containers of the same shape as crane's (the host's / read-only, tmpfs at /run, /root, /tmp, /var/log and
/var/tmp, a fixed address, crane's init.sh with the key in CRANE_AUTHORIZED_KEY, a data directory bind-mounted at
/srv on the storage server), waits for their SSH ports, and runs crane's three shipped playbooks with
``ansible_runner.run``, with the vars crane passes: storage, then the three web servers in parallel (threads), then
the load balancer with the haproxy.cfg that ``render_haproxy`` renders. Seconds in the JSON are from its own start.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ansible_runner
import libvirt

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from crane_iac.appdomain.haproxy import BACKEND, Server, render_haproxy  # noqa: E402  (the same rendered file)

APPDOMAIN = REPO / "crane_iac" / "appdomain"
PLAYBOOKS = APPDOMAIN / "playbooks"
INIT = APPDOMAIN / "files" / "init.sh"
URI = "lxc:///system"
WRITABLE = ("/root", "/run", "/tmp", "/var/log", "/var/tmp")
SOCKET = "/run/crane/haproxy/admin.sock"
#: host name suffix, memory MiB, index of its address (.10 + index), as crane's AppDomain lays them out
HOSTS = [("lb", 128, 0), ("storage", 512, 1), ("web-1", 256, 2), ("web-2", 256, 3), ("web-3", 256, 4)]
SSH_ARGS = ("-o ControlMaster=no -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")


def container_xml(name: str, memory: int, address: str, network: str, public_key: str, data: Path | None) -> str:
    ram = "".join(f"<filesystem type='ram'><source usage='{memory}' units='MiB'/><target dir='{d}'/></filesystem>"
                  for d in WRITABLE)
    srv = f"<filesystem type='mount'><source dir='{data}'/><target dir='/srv'/></filesystem>" if data else ""
    return f"""<domain type='lxc'><name>{name}</name><memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>
  <os><type>exe</type><init>{INIT}</init><initenv name='CRANE_AUTHORIZED_KEY'>{public_key}</initenv></os>
  <devices>
    <filesystem type='mount'><source dir='/'/><target dir='/'/><readonly/></filesystem>{ram}{srv}
    <interface type='network'><source network='{network}'/><ip address='{address}' family='ipv4' prefix='24'/>
    </interface>
    <console type='pty'/>
  </devices></domain>"""


def wait_ssh(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, 22), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"no SSH on {address} after {timeout} s") from None
            time.sleep(0.05)


def run_playbook(workdir: Path, playbook: str, group: str, hosts: dict[str, str], key: Path,
                 extravars: dict[str, Any]) -> None:
    """One ansible-runner run of a shipped playbook against ``hosts`` (name → address) in group ``group``."""
    private = workdir / f"run-{group}-{'-'.join(hosts)}"
    private.mkdir()
    inventory = {"all": {"vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                         "hosts": {name: {"ansible_host": address, "ansible_user": "root",
                                          "ansible_ssh_private_key_file": str(key)}
                                   for name, address in hosts.items()},
                         "children": {group: {"hosts": {name: {} for name in hosts}}}}}
    envvars = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
               "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_GATHERING": "explicit", "ANSIBLE_PIPELINING": "True",
               "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_SSH_ARGS": SSH_ARGS, "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(private / "local")}
    runner = ansible_runner.run(private_data_dir=str(private), project_dir=str(workdir),
                                playbook=str(PLAYBOOKS / playbook), inventory=inventory,
                                extravars={"crane_files_dir": str(APPDOMAIN / "files"), **extravars},
                                envvars=envvars, quiet=True, rotate_artifacts=0)
    if runner.status != "successful":
        out = Path(runner.config.artifact_dir) / "stdout"
        tail = out.read_text().strip().splitlines()[-8:] if out.is_file() else []
        raise SystemExit(f"{playbook} on {', '.join(hosts)}: {runner.status}\n" + "\n".join(tail))


def up(prefix: str, net3: str, workdir: Path) -> dict[str, float]:
    started = time.monotonic()
    times: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    data = workdir / "storage-data"
    data.mkdir()
    conn = libvirt.open(URI)
    network = f"{prefix}net"
    net = conn.networkDefineXML(f"<network><name>{network}</name><bridge stp='off'/>"
                                f"<ip address='{net3}.1' prefix='24'/></network>")
    net.create()
    times["network"] = time.monotonic() - started
    address = {host: f"{net3}.{10 + index}" for host, _, index in HOSTS}
    for host, memory, _ in HOSTS:
        xml = container_xml(f"{prefix}{host}", memory, address[host], network, public_key,
                            data if host == "storage" else None)
        conn.defineXML(xml).create()
    times["containers"] = time.monotonic() - started
    for host in address:
        wait_ssh(address[host])
    times["ssh"] = time.monotonic() - started
    subnet = f"{net3}.0/24"
    run_playbook(workdir, "storage.yml", "storage", {f"{prefix}storage": address["storage"]}, key,
                 {"pg_port": 5432, "db_name": "app", "db_user": "app", "data_dir": "/srv/data", "subnet": subnet,
                  "files": {}})
    times["storage"] = time.monotonic() - started
    dsn = f"host={address['storage']} port=5432 dbname=app user=app connect_timeout=3"
    webs = [f"web-{i}" for i in (1, 2, 3)]
    failures: list[BaseException] = []

    def web(host: str) -> None:
        try:
            run_playbook(workdir, "web.yml", "web", {f"{prefix}{host}": address[host]}, key,
                         {"app_port": 8080, "dsn": dsn, "files": {}})
        except BaseException as exc:  # reported once the other threads are done
            failures.append(exc)

    threads = [threading.Thread(target=web, args=(host,)) for host in webs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    times["web"] = time.monotonic() - started
    servers = [Server(f"{prefix}{host}", address[host], 8080) for host in webs]
    config = render_haproxy(f"{prefix}app", bind=address["lb"], port=80, balance="leastconn",
                            health_check="/healthz", servers=servers, runtime_socket=SOCKET,
                            state_file="/run/crane/haproxy/servers.state", stats_port=8404)
    run_playbook(workdir, "lb.yml", "lb", {f"{prefix}lb": address["lb"]}, key,
                 {"haproxy_backend": BACKEND, "haproxy_socket": SOCKET, "frontend_port": 80, "drain_timeout": 30.0,
                  "servers": [{"name": s.name, "address": s.address, "port": s.port} for s in servers],
                  "files": {"haproxy.cfg": config}})
    times["lb"] = time.monotonic() - started
    conn.close()
    return times


def down(prefix: str, workdir: Path) -> None:
    conn = libvirt.open(URI)
    for dom in conn.listAllDomains():
        if dom.name().startswith(prefix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in conn.listAllNetworks():
        if net.name().startswith(prefix):
            if net.isActive():
                net.destroy()
            net.undefine()
    conn.close()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "up":
        print(json.dumps(up(sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
    else:
        down(sys.argv[2], Path(sys.argv[3]))
