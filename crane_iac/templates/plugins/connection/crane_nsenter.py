"""Connection plug-in ``crane_nsenter``: runs a task's commands inside a running container by entering the
namespaces of its first process (``nsenter --target PID``: mount, UTS, IPC, network and PID namespaces, its root
and working directory), and moves files through the same door (``cat``), so that they land in the container's view
of its file system, tmpfs directories included. ansible-core has no container connection of its own, and a template
build needs neither sshd nor a network in the container (docs/decisions/templates.md)."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: crane_nsenter
short_description: run commands in a container's namespaces with nsenter
description:
  - Enters the namespaces of the container's first process (its PID on the host); runs as root on the host.
options:
  pid:
    description: the host PID of the container's first process
    vars:
      - name: crane_nsenter_pid
"""


class Connection(ConnectionBase):  # type: ignore[misc]
    transport = "crane_nsenter"
    has_pipelining = True

    def _enter(self) -> list[str]:
        pid = str(self.get_option("pid"))
        return ["nsenter", "--target", pid, "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--"]

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = [*self._enter(), "/bin/sh", "-c", cmd]
        try:
            done = subprocess.run(argv, input=in_data or b"", capture_output=True, check=False)
        except OSError as exc:
            raise AnsibleConnectionFailure(f"nsenter failed: {exc}") from exc
        return done.returncode, done.stdout, done.stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            done = subprocess.run([*self._enter(), "/bin/sh", "-c", f"cat > {shlex.quote(out_path)}"], stdin=source,
                                  capture_output=True, check=False)
        if done.returncode != 0:
            raise AnsibleError(f"copying to {out_path} failed: {done.stderr.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as target:
            done = subprocess.run([*self._enter(), "/bin/cat", in_path], stdout=target, stderr=subprocess.PIPE,
                                  check=False)
        if done.returncode != 0:
            raise AnsibleError(f"fetching {in_path} failed: {done.stderr.decode(errors='replace')}")

    def close(self, *args: Any) -> None:
        self._connected = False
