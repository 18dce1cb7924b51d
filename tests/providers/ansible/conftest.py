"""A real sshd on a loopback port, started by the tests as root with its own host key and authorized key in a
temporary directory, and torn down (its sessions first, then itself) whatever happens; and the provider whose
generated key it authorizes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crane_iac.objects import Owner
from crane_iac.providers.ansible import AnsibleProvider
from crane_iac.providers.base import CreateRequest
from tests.conftest import free_port
from tests.waiting import wait_until

SSHD = "/usr/sbin/sshd"
PLAYBOOKS = Path(__file__).parent / "playbooks"
OWNER = Owner("test", "ssh_key.test")


@dataclass
class LoopbackHost:
    """The sshd the tests configure, the provider that reaches it and the configuration properties that name it."""

    port: int
    provider: AnsibleProvider
    key: str
    progress: list[str]

    def configuration(self, playbook: str, **vars: Any) -> dict[str, Any]:
        return {"playbook": str(PLAYBOOKS / playbook), "digest": "", "key": self.key, "user": "root",
                "hosts": [{"name": "loop", "address": "127.0.0.1", "port": self.port, "groups": ["test"],
                           "vars": {}}],
                "vars": vars, "files": {}, "validate": {}}


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (sshd's sessions are its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    def banner() -> bool:
        assert proc.poll() is None, f"sshd exited: {log.read_text()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    wait_until(banner, 10, f"sshd's banner on port {port}", detail=log.read_text)


@pytest.fixture
def sshd_on_loopback(tmp_path: Path) -> Iterator[LoopbackHost]:
    """sshd on 127.0.0.1:<free port>, root's login by the key the provider generated (needs root: sshd logs in
    root, and the configuration's tasks run as root on this machine, within tmp_path)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test's sshd logs in as root")
    ssh_dir = tmp_path / "sshd"
    ssh_dir.mkdir()
    progress: list[str] = []
    provider = AnsibleProvider(reaches_guests=True, key_dir=tmp_path / "keys", project_dir=tmp_path,
                               progress=progress.append)
    key = provider.create(CreateRequest("ssh_key", "test-key", {"path": None, "type": "ed25519"}, OWNER))
    (ssh_dir / "authorized_keys").write_text(key.outputs["public_key"] + "\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "host_key")], check=True)
    port = free_port()
    config = ssh_dir / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {ssh_dir}/host_key\n"
                      f"AuthorizedKeysFile {ssh_dir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                      f"PidFile {ssh_dir}/sshd.pid\n"
                      "StrictModes no\n"  # tmp_path is under /tmp, which others may write to
                      "Subsystem sftp /usr/lib/openssh/sftp-server\n")
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    log = ssh_dir / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL)
    try:
        wait_for_banner(port, proc, log)
        yield LoopbackHost(port, provider, "test-key", progress)
    finally:
        for child in children_of(proc.pid):  # sessions outlive their listener: end them first, it reaps them
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        with contextlib.suppress(AssertionError):  # sshd is stopped whether or not they went
            wait_until(lambda: children_of(proc.pid) == [], 10, "sshd's sessions ending")
        proc.terminate()
        proc.wait(timeout=10)
        if made_privsep:
            privsep.rmdir()

