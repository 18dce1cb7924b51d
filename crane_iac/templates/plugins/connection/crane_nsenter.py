"""Connection plug-in ``crane_nsenter``: runs a task's commands inside a running container by entering the
namespaces of its first process (``nsenter --target PID``: mount, UTS, IPC, network and PID namespaces, its root
and working directory), and moves files through the same door (``cat``), so that they land in the container's view
of its file system, tmpfs directories included. ansible-core has no container connection of its own, and a template
build needs neither sshd nor a network in the container (docs/decisions/templates.md).
The commands and the copies are crane_iac/templates/entering.py's."""

from __future__ import annotations

from crane_iac.templates.entering import EnteringConnection

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


class Connection(EnteringConnection):
    transport = "crane_nsenter"
    entering = "nsenter"

    def enter(self) -> list[str]:
        pid = str(self.get_option("pid"))
        return ["nsenter", "--target", pid, "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--"]
