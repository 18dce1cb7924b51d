"""Connection plug-in ``crane_chroot``: runs a task's commands in a chroot of a disk image's mounted root file system
(``chroot ROOT /bin/sh -c CMD``) and moves files through the same door (``cat``), for a VM template's build, which
opens the image without booting it (crane_iac/templates/images.py). ansible-core ships no chroot connection (the
community.general collection does, and crane does not depend on it). A ``raw`` task needs only ``/bin/sh`` in the
image; a module needs Python there (``ansible_python_interpreter``, /usr/bin/python3).
The commands and the copies are crane_iac/templates/entering.py's."""

from __future__ import annotations

from crane_iac.templates.entering import EnteringConnection

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


class Connection(EnteringConnection):
    transport = "crane_chroot"
    entering = "chroot"
    cwd = "/"

    def enter(self) -> list[str]:
        return ["chroot", str(self.get_option("root"))]
