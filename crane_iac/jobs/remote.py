"""The head node as the pipeline drives it: shell scripts run there, files copied there and back with rsync.

``SshHead`` logs in as the cluster user with the user key crane keeps for the cluster (``-i`` its path: the key is
never read, printed or stored here) and checks the head's host key against a known_hosts holding only the key the
head wrote to the shared disk (``StrictHostKeyChecking=yes``: a head showing another key is refused). ``LocalHead``
is a directory of this machine standing for the head (the same scripts, run by ``sh``): the pipeline's tests run on
it where no cluster can.

**Detached runs.** The job's command runs on the head in a session of its own (``setsid``), its output going to
``.crane/log`` in the job's directory and, when it ends, its exit code to ``.crane/exit`` (written whole: a
temporary file renamed). ``.crane/pid`` holds the session's ID, which is its process group's: ``cancel`` signals
the group. Starting refuses to start a job whose pid file exists (crane died between starting it and recording
that it did): it attaches instead. Attaching is ``tail -F`` of the log until the process is gone (``--pid``), then
reading the exit code; a crane that dies meanwhile leaves the job running, and the next one attaches again. A
job file's batch script runs the same way, its command being the script that submits it to Slurm and follows it
(slurm.py); ``cancel`` then scancels the Slurm job too.
"""

from __future__ import annotations

import codecs
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from crane_iac.errors import CraneError
from crane_iac.jobs.slurm import scancel_script

#: the job's bookkeeping on the head, in its directory
STATE_DIR = ".crane"
LOG = f"{STATE_DIR}/log"
EXIT = f"{STATE_DIR}/exit"
PID = f"{STATE_DIR}/pid"


class HeadError(CraneError):
    """The head could not be reached or refused a step; the message has what it said."""


class Head:
    """Shell and rsync access to the head node; subclasses say how to get there."""

    #: the cluster's work directory on the head (the jobs' directories are in it)
    work_dir: str
    #: what the messages call it
    label: str

    def argv(self, script: str) -> list[str]:
        raise NotImplementedError

    def rsync_shell(self) -> list[str]:
        """rsync's ``-e`` and the prefix of a path on the head (``user@host:``), or none for a local head."""
        raise NotImplementedError

    def remote(self, path: str) -> str:
        raise NotImplementedError

    def run(self, script: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self.argv(script), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HeadError(f"{self.label}: no answer in {timeout:.0f} s") from None

    def check(self, script: str, what: str, *, timeout: float = 120) -> str:
        done = self.run(script, timeout=timeout)
        if done.returncode != 0:
            raise HeadError(f"{self.label}: {what} failed (exit {done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout

    def stream(self, script: str, sink: BinaryIO | None = None) -> int:
        """Run ``script`` with its output (stdout and stderr) copied to ``sink`` as it comes; its exit code."""
        binary = sink or getattr(sys.stdout, "buffer", None)
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with subprocess.Popen(self.argv(script), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            while chunk := os.read(proc.stdout.fileno(), 65536):
                if binary is not None:
                    binary.write(chunk)
                    binary.flush()
                else:  # a text stream without bytes beneath (captured output)
                    sys.stdout.write(text.decode(chunk))
                    sys.stdout.flush()
            return proc.wait()

    def _rsync(self, sources: Sequence[str], dest: str, what: str) -> None:
        argv = ["rsync", "-rlpt", *self.rsync_shell(), "--", *sources, dest]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise HeadError(f"{self.label}: {what} failed (rsync exit {done.returncode}): {done.stderr.strip()[-800:]}")

    def upload(self, files: Sequence[Path], directory: str) -> None:
        """Copy ``files`` into ``directory`` on the head (made if missing), by their names."""
        self.check(f"mkdir -p {shlex.quote(directory)}", "making the job's directory")
        self._rsync([str(f) for f in files], self.remote(directory.rstrip("/") + "/"), "the upload")

    def fetch(self, directory: str, names: Sequence[str], local: Path) -> None:
        """Copy ``names`` (paths in ``directory`` on the head) into ``local``, by their names."""
        local.mkdir(parents=True, exist_ok=True)
        if not names:
            return
        self._rsync([self.remote(f"{directory.rstrip('/')}/{n}") for n in names], str(local) + "/", "the fetch")

    # the detached run

    def start(self, directory: str, command: str) -> tuple[int, bool]:
        """Start ``command`` in ``directory``, detached; its process group and whether it was started now (False:
        it had been started already, by a run that died before recording it)."""
        d = shlex.quote(directory)
        wrapped = shlex.quote(f"sh {STATE_DIR}/command.sh; echo $? > {EXIT}.tmp && mv {EXIT}.tmp {EXIT}")
        script = "\n".join([
            f"cd {d} || exit 1", f"mkdir -p {STATE_DIR} || exit 1",
            f"if [ -e {PID} ]; then echo attach $(cat {PID}); exit 0; fi",
            f"printf '%s\\n' {shlex.quote(command)} > {STATE_DIR}/command.sh || exit 1",
            # a background simple command: its pid ($!) is no group leader, so setsid makes it one, in place
            f"setsid sh -c {wrapped} > {LOG} 2>&1 < /dev/null &",
            f"echo $! > {PID}.tmp && mv {PID}.tmp {PID} && echo started $(cat {PID})"])
        said = self.check(script, "starting the job").split()
        if len(said) != 2 or said[0] not in ("started", "attach"):
            raise HeadError(f"{self.label}: starting the job said {' '.join(said)!r}")
        return int(said[1]), said[0] == "started"

    def attach(self, directory: str, sink: BinaryIO | None = None) -> int | None:
        """Stream the job's log from its start until its process is gone; its exit code, or None if it ended
        without one (killed: cancelled, or its head restarted)."""
        d = shlex.quote(directory)
        self.stream(f"cd {d} && touch {LOG} && tail -c +1 -s 0.2 --pid=$(cat {PID}) -F {LOG} 2>/dev/null", sink)
        return self.exit_code(directory)

    def exit_code(self, directory: str) -> int | None:
        said = self.check(f"cd {shlex.quote(directory)} && if [ -e {EXIT} ]; then cat {EXIT}; "
                          f"elif kill -0 $(cat {PID}) 2>/dev/null; then echo running; else echo gone; fi",
                          "reading the job's exit code").strip()
        if said == "running":
            raise HeadError(f"{self.label}: the job's log stopped while its process runs")
        return int(said) if said.lstrip("-").isdigit() else None

    def cancel(self, directory: str) -> bool:
        """Cancel the job's Slurm job if it has one (``scancel``), and signal its process group (TERM); whether
        there was one running."""
        d = shlex.quote(directory)
        said = self.check(f"cd {d} 2>/dev/null && {{ {scancel_script()}; true; }} && [ -e {PID} ] "
                          f"&& kill -TERM -$(cat {PID}) 2>/dev/null && echo killed || echo none",
                          "cancelling the job").strip()
        return said == "killed"

    def missing(self, directory: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are not in ``directory`` on the head."""
        if not names:
            return []
        quoted = " ".join(shlex.quote(n) for n in names)
        out = self.check(f"cd {shlex.quote(directory)} && for f in {quoted}; do [ -e \"$f\" ] || echo \"$f\"; done",
                         "looking for the outputs")
        return out.splitlines()


class SshHead(Head):
    """The head over SSH as the cluster user: ``ssh -i KEY`` with the head's host key pinned in ``known_hosts``."""

    def __init__(self, *, address: str, user: str, key: Path, known_hosts: Path, work_dir: str) -> None:
        self.address, self.user, self.key, self.known_hosts, self.work_dir = address, user, key, known_hosts, work_dir
        self.label = f"{user}@{address}"

    def ssh(self) -> list[str]:
        return ["ssh", "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
                "-o", "LogLevel=ERROR"]

    def argv(self, script: str) -> list[str]:
        return [*self.ssh(), f"{self.user}@{self.address}", script]

    def rsync_shell(self) -> list[str]:
        return ["-e", shlex.join(self.ssh())]

    def remote(self, path: str) -> str:
        return f"{self.user}@{self.address}:{path}"


class LocalHead(Head):
    """A directory of this machine standing for the head: the scripts run by ``sh`` here, files copied by rsync."""

    def __init__(self, root: Path) -> None:
        self.work_dir = str(root)
        self.label = f"local head {root}"

    def argv(self, script: str) -> list[str]:
        return ["sh", "-c", script]

    def rsync_shell(self) -> list[str]:
        return []

    def remote(self, path: str) -> str:
        return path


Connect = Callable[[], Head]
