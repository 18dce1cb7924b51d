"""Baseline for an MPI job: what a hand-written libvirt-python script does for `crane job run` of tests/mpi/pi.c on
a 4-node cluster, without crane, in one process from nothing to the result here and back to nothing.

    python mpijob.py PREFIX NET3 WORKDIR PROGRAM OUTDIR     # e.g. cbj-b1- 10.95.1 /tmp/x tests/mpi/pi.c /tmp/out

It makes an SSH key (ssh-keygen) and the shared directory (a plain host directory, no storage pool), defines and
starts an isolated network without DHCP and five LXC containers of the shape crane's MPICluster gives its nodes (the
host's / read-only, tmpfs at /run, /root, /tmp, /var/log and /var/tmp, the shared directory at /srv, a fixed
address, crane's own crane_iac/mpi/files/init.sh as PID 1 with the same environment), waits for every node's host
key on the shared directory, writes there what the head's configuration run writes (the cluster user's key,
authorized_keys, the pinned known_hosts, ssh config, OpenMPI's parameters and the hostfile crane renders), waits for
every node's SSH port, then over SSH as the cluster user (the head's host key pinned): uploads the program, builds it
with mpicc, runs ``mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8``, copies pi.out back into OUTDIR, and finally
destroys and undefines the containers and the network and removes WORKDIR. Prints one JSON line of phase times,
seconds from its own start. A failure still tears everything down.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import libvirt

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from crane_iac.mpi.hostfile import Node, render_hostfile, render_mca_params  # noqa: E402  (the same files)

INIT = REPO / "crane_iac" / "mpi" / "files" / "init.sh"
URI = "lxc:///system"
WRITABLE = ("/root", "/run", "/tmp", "/var/log", "/var/tmp")
USER, UID, SHARED = "mpi", 2600, "/srv"
NODES, SLOTS, MEMORY = 4, 2, 256
COMMAND = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8 > pi.out && cat pi.out"


def container_xml(name: str, node: str, address: str, network: str, public_key: str, shared: Path) -> str:
    ram = "".join(f"<filesystem type='ram'><source usage='{MEMORY}' units='MiB'/><target dir='{d}'/></filesystem>"
                  for d in WRITABLE)
    env = {"CRANE_AUTHORIZED_KEY": public_key, "CRANE_NODE": node, "CRANE_MPI_USER": USER,
           "CRANE_MPI_UID": str(UID), "CRANE_SHARED": SHARED}
    initenv = "".join(f"<initenv name='{k}'>{v}</initenv>" for k, v in env.items())
    return f"""<domain type='lxc'><name>{name}</name><memory unit='MiB'>{MEMORY}</memory><vcpu>1</vcpu>
  <os><type>exe</type><init>{INIT}</init>{initenv}</os>
  <devices>
    <filesystem type='mount'><source dir='/'/><target dir='/'/><readonly/></filesystem>{ram}
    <filesystem type='mount'><source dir='{shared}'/><target dir='{SHARED}'/></filesystem>
    <interface type='network'><source network='{network}'/><ip address='{address}' family='ipv4' prefix='24'/>
    </interface>
    <console type='pty'/>
  </devices></domain>"""


def wait_for(done: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not after {timeout} s")
        time.sleep(0.05)


def ssh_open(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1.0):
            return True
    except OSError:
        return False


def write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, UID, UID)


def job(prefix: str, net3: str, workdir: Path, program: Path, outdir: Path, times: dict[str, float],
        started: float) -> None:
    def mark(phase: str) -> None:
        times[phase] = round(time.monotonic() - started, 2)

    workdir.mkdir(parents=True)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    shared = workdir / "shared"
    shared.mkdir()
    conn = libvirt.open(URI)
    try:
        network = f"{prefix}net"
        conn.networkDefineXML(f"<network><name>{network}</name><bridge stp='off'/>"
                              f"<ip address='{net3}.1' prefix='24'/></network>").create()
        names = ["head", *(f"node-{i}" for i in range(1, NODES + 1))]
        address = {n: f"{net3}.{10 + i}" for i, n in enumerate(names)}
        for n in names:
            conn.defineXML(container_xml(f"{prefix}{n}", n, address[n], network, public_key, shared)).create()
        mark("containers")
    finally:
        conn.close()
    keys = shared / ".crane" / "hostkeys"
    wait_for(lambda: all((keys / f"{n}.pub").is_file() for n in names), "every node's host key")
    mark("host keys")
    # what the head's configuration run writes, written here straight into the shared directory
    home = shared / "home"
    for d in (".ssh", ".openmpi"):
        (home / d).mkdir(mode=0o700, exist_ok=True)
        os.chown(home / d, UID, UID)
    write(home / ".ssh" / "id_ed25519", key.read_text(), 0o600)
    write(home / ".ssh" / "id_ed25519.pub", public_key + "\n", 0o600)
    write(home / ".ssh" / "authorized_keys", public_key + "\n", 0o600)
    pinned = "".join(f"{address[n]},{prefix}{n} {' '.join((keys / f'{n}.pub').read_text().split()[:2])}\n"
                     for n in names)
    write(home / ".ssh" / "known_hosts", pinned, 0o644)
    write(home / ".ssh" / "config", "Host *\n    StrictHostKeyChecking yes\n    UserKnownHostsFile ~/.ssh/known_hosts\n"
          "    IdentityFile ~/.ssh/id_ed25519\n    IdentitiesOnly yes\n    BatchMode yes\n", 0o600)
    write(home / ".openmpi" / "mca-params.conf", render_mca_params(f"{net3}.0/24"), 0o644)
    (shared / "hostfile").write_text(render_hostfile(prefix, [Node(f"{prefix}node-{i}", address[f"node-{i}"], SLOTS)
                                                              for i in range(1, NODES + 1)]))
    known = workdir / "known_hosts"
    known.write_text(pinned)
    wait_for(lambda: all(ssh_open(address[n]) for n in names), "every node's SSH port")
    mark("ssh")
    ssh = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR", f"{USER}@{address['head']}"]
    directory = f"{SHARED}/work/pi-job"
    with program.open("rb") as source:
        subprocess.run([*ssh, f"mkdir -p {directory} && cat > {directory}/{program.name}"], stdin=source, check=True)
    mark("upload")
    subprocess.run([*ssh, f"cd {directory} && mpicc -O2 -o pi {program.name}"], check=True)
    mark("build")
    subprocess.run([*ssh, f"cd {directory} && {COMMAND}"], check=True, stdout=subprocess.DEVNULL)
    mark("run")
    outdir.mkdir(parents=True, exist_ok=True)
    with (outdir / "pi.out").open("wb") as out:
        subprocess.run([*ssh, f"cat {directory}/pi.out"], stdout=out, check=True)
    mark("fetch")


def down(prefix: str, workdir: Path) -> None:
    conn = libvirt.open(URI)
    try:
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
    finally:
        conn.close()
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    prefix, net3, workdir, program, outdir = sys.argv[1:6]
    started = time.monotonic()
    times: dict[str, float] = {}
    try:
        job(prefix, net3, Path(workdir), Path(program), Path(outdir), times, started)
    finally:
        down(prefix, Path(workdir))
        times["release"] = round(time.monotonic() - started, 2)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
