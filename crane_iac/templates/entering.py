"""What crane's two connection plug-ins for template builds share (plugins/connection/: ``crane_nsenter`` into a
running container, ``crane_chroot`` into a disk image's mounted root): each task's command runs as
``<enter> /bin/sh -c CMD`` on this host, and files move through the same door with ``cat``, so that they land in the
view of the file system the commands see. A plug-in names only how to enter (``enter``) and what it is called.

Imported only by those plug-ins, inside ansible-runner's playbook process (it needs ansible-core)."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase


class EnteringConnection(ConnectionBase):  # type: ignore[misc]
    """A connection whose every command runs on this host behind ``enter()`` (an argv prefix)."""

    has_pipelining = True
    #: the program that enters, for the message when it cannot run
    entering = ""
    #: the working directory of that program on this host (None: ansible-runner's)
    cwd: str | None = None

    def enter(self) -> list[str]:
        raise NotImplementedError

    def _connect(self) -> EnteringConnection:
        self._connected = True
        return self

    def _run(self, argv: list[str], **how: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.enter(), *argv], check=False, cwd=self.cwd, **how)

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        try:
            done = self._run(["/bin/sh", "-c", cmd], input=in_data or b"", capture_output=True)
        except OSError as exc:
            raise AnsibleConnectionFailure(f"{self.entering} failed: {exc}") from exc
        return done.returncode, done.stdout, done.stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            done = self._run(["/bin/sh", "-c", f"cat > {shlex.quote(out_path)}"], stdin=source, capture_output=True)
        if done.returncode != 0:
            raise AnsibleError(f"copying to {out_path} failed: {done.stderr.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as target:
            done = self._run(["/bin/cat", in_path], stdout=target, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise AnsibleError(f"fetching {in_path} failed: {done.stderr.decode(errors='replace')}")

    def close(self, *args: Any) -> None:
        self._connected = False
