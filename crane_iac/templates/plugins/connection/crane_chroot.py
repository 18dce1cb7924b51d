"""Connection plug-in ``crane_chroot``: runs a task's commands in a chroot of a disk image's mounted root file system
(``chroot ROOT /bin/sh -c CMD``) and moves files through the same door (``cat``), for a VM template's build, which
opens the image without booting it (crane_iac/templates/images.py). ansible-core ships no chroot connection (the
community.general collection does, and crane does not depend on it). A ``raw`` task needs only ``/bin/sh`` in the
image; a module needs Python there (``ansible_python_interpreter``, /usr/bin/python3)."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: crane_chroot
short_description: run commands in a chroot of a mounted disk image
description:
  - Runs each command with chroot(8) in the given directory; runs as root on the host.
options:
  root:
    description: the directory the image's root file system is mounted at
    vars:
      - name: crane_chroot_root
"""


class Connection(ConnectionBase):  # type: ignore[misc]
    transport = "crane_chroot"
    has_pipelining = True

    def _enter(self) -> list[str]:
        return ["chroot", str(self.get_option("root"))]

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        try:
            done = subprocess.run([*self._enter(), "/bin/sh", "-c", cmd], input=in_data or b"", capture_output=True,
                                  check=False, cwd="/")
        except OSError as exc:
            raise AnsibleConnectionFailure(f"chroot failed: {exc}") from exc
        return done.returncode, done.stdout, done.stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            done = subprocess.run([*self._enter(), "/bin/sh", "-c", f"cat > {shlex.quote(out_path)}"], stdin=source,
                                  capture_output=True, check=False, cwd="/")
        if done.returncode != 0:
            raise AnsibleError(f"copying to {out_path} failed: {done.stderr.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as target:
            done = subprocess.run([*self._enter(), "/bin/cat", in_path], stdout=target, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
        if done.returncode != 0:
            raise AnsibleError(f"fetching {in_path} failed: {done.stderr.decode(errors='replace')}")

    def close(self, *args: Any) -> None:
        self._connected = False
