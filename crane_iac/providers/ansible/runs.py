"""One run of a playbook with ansible-runner, in a private temporary directory: a generated ansible.cfg (no fact
gathering, pipelining, one SSH connection per host kept open for the run), the inventory as a value, events turned
into progress lines, and a failure turned into a ``ProviderError`` naming the host and the task. What a run leaves
behind when crane is killed (its directory, its SSH master connections) the next run removes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.extras import require

Progress = Callable[[str], None]

#: a run's directory: crane-ansible-<pid of the crane process>-<random>
_PREFIX = "crane-ansible-"
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)
_TAIL = 6  # lines of a failed command's output a message quotes

#: ``retries``: ssh's connection to a guest that has just come up may be refused or dropped while its sshd starts
#: or under load (seen as "unreachable" with no detail); ansible tries such a connection again, up to 3 times,
#: before it counts the host unreachable
_CONFIG = """\
[defaults]
gathering = explicit
host_key_checking = False
retry_files_enabled = False
deprecation_warnings = False
nocows = True
forks = {forks}
local_tmp = {dir}/local
timeout = 20

[ssh_connection]
pipelining = True
retries = 3
control_path_dir = {dir}/cp
ssh_args = -o ControlMaster=auto -o ControlPersist=30s -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR \
-o StrictHostKeyChecking=no -o UserKnownHostsFile={dir}/known_hosts -o ServerAliveInterval=10
"""


@dataclass
class RunResult:
    """What a finished run did: changed tasks per host."""

    changed: dict[str, int] = field(default_factory=dict)

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


@dataclass
class _Failure:
    host: str
    task: str
    message: str


class Redactor:
    """Keeps private keys out of messages: any PEM private key block, any line of the private keys a run uses, and
    the run's secrets."""

    def __init__(self, private_keys: Iterable[Path], secrets: Iterable[str] = ()) -> None:
        self.lines: set[str] = {s for s in secrets if s}
        for path in private_keys:
            try:
                self.lines |= {ln.strip() for ln in path.read_text().splitlines() if len(ln.strip()) >= 16}
            except (OSError, UnicodeDecodeError):
                pass

    def __call__(self, text: str) -> str:
        text = _PEM.sub("[private key redacted]", text)
        for line in self.lines:
            if line in text:
                text = text.replace(line, "[redacted]")
        return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _close_masters(run_dir: Path) -> None:
    """Ends the SSH master connections a run kept open (ControlPersist would keep them a while after it): asked to
    exit through their control sockets, and any master still running with this run's control path (one whose host
    went away answers no request) is sent SIGTERM."""
    control = run_dir / "cp"
    if not control.is_dir():
        return
    for socket in control.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "crane"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10, check=False)
    needle = f"ControlPath={control}/".encode()
    needle_quoted = f'ControlPath="{control}/'.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if argv.startswith(b"ssh\0") and (needle in argv or needle_quoted in argv):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGTERM)


def sweep(parent: Path | None = None) -> list[Path]:
    """Removes the directories of runs whose crane process is gone (killed mid-run), closing their SSH masters."""
    parent = parent or Path(tempfile.gettempdir())
    swept = []
    for run_dir in parent.glob(f"{_PREFIX}*"):
        pid = run_dir.name[len(_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and run_dir.is_dir():
            _close_masters(run_dir)
            # the killed run's ansible-playbook dies of the hang-up of its terminal, writing its last events here
            for _ in range(50):
                shutil.rmtree(run_dir, ignore_errors=True)
                if not run_dir.exists():
                    break
                time.sleep(0.1)
            swept.append(run_dir)
    return swept


def _search_path() -> str:
    """PATH with the directory of the ansible-playbook beside this Python (crane's virtualenv) first, so a crane
    started as .venv/bin/crane without its virtualenv activated runs its own ansible-core."""
    path = os.environ.get("PATH", os.defpath)
    beside = Path(sys.executable).with_name("ansible-playbook")
    if beside.is_file():
        return f"{beside.parent}{os.pathsep}{path}"
    if shutil.which("ansible-playbook", path=path) is None:
        raise ProviderError("ansible-playbook is not installed: scripts/install.sh installs crane with ansible-core")
    return path


def _tail(text: Any) -> str:
    lines = [ln.rstrip() for ln in str(text or "").splitlines() if ln.strip()]
    return "\n".join(lines[-_TAIL:])


def failure_message(res: dict[str, Any]) -> str:
    """What went wrong in a failed task's result: its ``msg`` and the last lines of what the command printed."""
    if "censored" in res:  # a no_log task (one that handles a secret): ansible keeps its result to itself
        return "its output is hidden (no_log: the task handles a secret)"
    msg = str(res.get("msg") or "").strip()
    if res.get("rc") not in (None, 0) and "return code" in msg:
        msg = f"exit status {res['rc']}"
    detail = _tail(res.get("stderr")) or _tail(res.get("stdout")) or _tail(res.get("module_stderr"))
    if not msg and not detail and isinstance(res.get("results"), list):  # a loop: its failed items' messages
        msg = "; ".join(failure_message(item) for item in res["results"] if isinstance(item, dict)
                        and item.get("failed"))
    return f"{msg}: {detail}" if msg and detail else msg or detail or "failed"


class _Events:
    """Turns ansible-runner's events into progress lines and remembers the first failure per host."""

    def __init__(self, progress: Progress | None, redact: Redactor) -> None:
        self.progress = progress
        self.redact = redact
        self.failures: dict[str, _Failure] = {}
        self.stats: dict[str, Any] = {}

    def _say(self, host: str, task: str, what: str) -> None:
        if self.progress is not None:
            self.progress(self.redact(f"{host}: {task}: {what}"))

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host, task = str(data.get("host", "")), str(data.get("task", "")).strip()
        res: dict[str, Any] = data["res"] if isinstance(data.get("res"), dict) else {}
        if kind == "runner_on_start":
            self._say(host, task, "started")
        elif kind == "runner_on_ok":
            self._say(host, task, "changed" if res.get("changed") else "ok")
        elif kind == "runner_on_skipped":
            self._say(host, task, "skipped")
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            message = self.redact(failure_message(res))
            if kind == "runner_on_unreachable":
                message = f"unreachable: {message}"
            self.failures.setdefault(host, _Failure(host, task, message))
            self._say(host, task, "unreachable" if kind == "runner_on_unreachable" else "failed")
        elif kind == "playbook_on_stats":
            self.stats = data
        return False  # the event is not kept in the run's artifacts (it is gone with the run's directory)


def _write_secrets(run_dir: Path, secrets: dict[str, str]) -> dict[str, str]:
    """Each secret in a file of its own (0600) in the run's directory (0700), outside ansible-runner's artifacts;
    the variables that give the playbook their paths. The files go with the run's directory, at its end or, for a
    run that was killed, at the next run's sweep."""
    if not secrets:
        return {}
    folder = run_dir / "secrets"
    folder.mkdir(mode=0o700)
    paths = {}
    for i, (var, value) in enumerate(sorted(secrets.items())):
        path = folder / str(i)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        paths[var] = str(path)
    return paths


def run_playbook(playbook: Path, *, inventory: dict[str, Any], extravars: dict[str, Any], project_dir: Path,
                 private_keys: Iterable[Path], secrets: dict[str, str] | None = None, progress: Progress | None = None,
                 timeout: int = 900, forks: int = 10) -> RunResult:
    """Runs ``playbook`` against ``inventory``; a failed host is a ``ProviderError`` naming it and its task.
    ``secrets``: variable → a secret the playbook gets as the path of a file holding it (``_write_secrets``): never
    on ansible-playbook's command line, in its environment or in ansible-runner's artifacts (which keep both)."""
    # a second of imports: only a run that happens pays for it
    ansible_runner = require("ansible_runner", "a configuration run (Configuration, app domains)")

    sweep()
    run_dir = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    redact = Redactor(private_keys, (secrets or {}).values())
    events = _Events(progress, redact)
    try:
        extravars = {**extravars, **_write_secrets(run_dir, secrets or {})}
        (run_dir / "cp").mkdir()
        (run_dir / "local").mkdir()
        (run_dir / "ansible.cfg").write_text(_CONFIG.format(dir=run_dir, forks=forks))
        runner = ansible_runner.run(
            private_data_dir=str(run_dir), project_dir=str(project_dir), playbook=str(playbook),
            inventory=inventory, extravars=extravars,
            envvars={"PATH": _search_path(), "ANSIBLE_CONFIG": str(run_dir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                     "ANSIBLE_FORCE_COLOR": "0"},
            event_handler=events, cancel_callback=lambda: False,  # never its own SIGINT handler (crane has one)
            quiet=True, timeout=timeout, rotate_artifacts=0)
        status, rc = runner.status, runner.rc
        stdout = Path(runner.config.artifact_dir) / "stdout"
        output = "" if status == "successful" or not stdout.is_file() else _tail(redact(stdout.read_text()))
    finally:
        _close_masters(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    if events.failures:
        first = sorted(events.failures.values(), key=lambda f: f.host)[0]
        others = sorted(set(events.failures) - {first.host})
        also = f" (also failed: {', '.join(others)})" if others else ""
        raise ProviderError(f"configuration of {first.host} failed at task '{first.task}': {first.message}{also}")
    if status != "successful":
        why = f"timed out after {timeout} s" if status == "timeout" else f"{status} (exit status {rc})"
        raise ProviderError(f"ansible-playbook {playbook.name} {why}: {output}")
    return RunResult({host: int(n) for host, n in (events.stats.get("changed") or {}).items()})
