"""Kind ``configuration``: a run of a playbook against hosts. Creating or updating one runs the playbook (a run
converges, so running again is how any change is made); deleting one forgets it (what a run did is the hosts', and
goes with them). ``check`` validates the files crane rendered (``haproxy -c``) before anything changes."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live, Owner, Reach
from crane_iac.projectkey import derived_key
from crane_iac.providers.ansible.inventory import inventory
from crane_iac.providers.ansible.keys import SshKeys
from crane_iac.providers.ansible.runs import Progress, run_playbook
from crane_iac.resources import playbooks

KIND = "configuration"
#: the plan's note on any changed field
RUNS_AGAIN = "runs the playbook again"
#: why a configuration on an endpoint with no guests does nothing (the plan shows it, the outputs keep it)
NO_GUESTS = ("skipped: crane does not reach this endpoint's guests (the embedded sandbox, or reach_guests not true), "
             "so no host can be reached")
_VALIDATE_TIMEOUT = 60


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    """Every changed field is a run of the playbook again; nothing forces a replacement."""
    return [FieldChange(key, before.get(key), after.get(key), Reach.LIVE, changes_outputs=True, note=RUNS_AGAIN)
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def validate(properties: dict[str, Any], run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
             ) -> list[str]:
    """Runs each ``validate`` command on its file, written to a temporary directory as ``{path}``; a command that
    fails gives its error lines, with the temporary path shown as the file's name."""
    problems = []
    files: dict[str, str] = properties.get("files") or {}
    for name, command in sorted((properties.get("validate") or {}).items()):
        if name not in files:
            problems.append(f"validate {name}: no such file among the configuration's files "
                            f"({', '.join(sorted(files)) or 'none'})")
            continue
        with tempfile.TemporaryDirectory(prefix="crane-validate-") as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(files[name])
            argv = [str(arg).replace("{path}", str(path)) for arg in command]
            try:
                done = run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=_VALIDATE_TIMEOUT, cwd=tmp)
            except FileNotFoundError:
                problems.append(f"validate {name}: {argv[0]!r} is not installed on this machine; crane runs the "
                                f"check where it plans")
                continue
            except subprocess.TimeoutExpired:
                problems.append(f"validate {name}: {argv[0]} did not finish in {_VALIDATE_TIMEOUT} s")
                continue
        if done.returncode != 0:
            lines = [ln.strip().replace(str(path), name) for ln in (done.stderr + done.stdout).splitlines()
                     if ln.strip()]
            shown = [ln for ln in lines if "ALERT" in ln or "rror" in ln] or lines
            problems.append(f"validate {name}: `{' '.join(command)}` failed (exit status {done.returncode}): "
                            + "; ".join(shown[-8:]))
    return problems


def wait_for_ssh(hosts: list[dict[str, Any]], *, timeout: float) -> None:
    """Wait until every host accepts TCP connections on its SSH port: a container answers within a second of its
    start, a VM once it has booted. A host that does not within ``timeout`` is a ProviderError naming it."""
    deadline = time.monotonic() + timeout
    for host in hosts:
        port = int(host.get("port") or 22)
        while True:
            try:
                with socket.create_connection((str(host["address"]), port), timeout=1.0):
                    break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ProviderError(f"configuration of {host['name']}: nothing answers on "
                                        f"{host['address']}:{port} after {timeout:.0f} s ({exc.strerror or exc}); "
                                        "is the host running, and reachable from this machine?") from None
                time.sleep(0.05)


class Configurations:
    """Runs configurations' playbooks, or when the endpoint reaches no guests records that nothing ran."""

    def __init__(self, keys: SshKeys, *, reaches_guests: bool, project_dir: Path, progress: Progress | None,
                 timeout: int, ssh_timeout: float = 60.0) -> None:
        self.keys = keys
        self.reaches_guests = reaches_guests
        self.project_dir = project_dir
        self.progress = progress
        self.timeout = timeout
        #: seconds a host just started gets to answer on its SSH port before the run fails naming it
        self.ssh_timeout = ssh_timeout

    def problems(self, properties: dict[str, Any]) -> list[str]:
        """A playbook that is not there, and files their ``validate`` commands refuse."""
        problems = []
        try:
            path = playbooks.resolve(properties["playbook"], self.project_dir)
            if not path.is_file():
                problems.append(f"playbook {properties['playbook']!r}: no such file {path}")
        except ValueError as exc:
            problems.append(str(exc))
        return problems + validate(properties)

    def remark(self, properties: dict[str, Any]) -> str | None:
        return None if self.reaches_guests else NO_GUESTS

    def create(self, physical: str, properties: dict[str, Any], owner: Owner) -> Live:
        return self._run(physical, properties)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        return self._run(physical, after)

    def read(self, physical: str, properties: dict[str, Any]) -> Live | None:
        return None  # state-only: what a run did is not an object crane can list

    def delete(self, physical: str, properties: dict[str, Any]) -> None:
        """Nothing to undo: the hosts a configuration ran on go with their own resources."""

    def _run(self, physical: str, properties: dict[str, Any]) -> Live:
        if not self.reaches_guests:
            return Live(KIND, physical, properties, {"ran": False, "skipped": NO_GUESTS})
        try:
            path = playbooks.resolve(properties["playbook"], self.project_dir)
        except ValueError as exc:
            raise ProviderError(f"configuration {physical!r}: {exc}") from None
        if not path.is_file():
            raise ProviderError(f"configuration {physical!r}: playbook {properties['playbook']!r} is not there "
                                f"({path})")
        private_key = self.keys.private_key_path(properties["key"])
        wait_for_ssh(properties["hosts"], timeout=self.ssh_timeout)
        hosts = inventory([properties], {properties["key"]: str(private_key)}, host_vars=True)
        extravars = {"crane_files_dir": str(playbooks.shipped_dir() / "files"), **(properties.get("vars") or {}),
                     "files": properties.get("files") or {}}
        secrets = {var: derived_key(self.project_dir / ".crane", name).hex()
                   for var, name in (properties.get("secrets") or {}).items()}
        # the private keys the playbook places on the hosts: their paths, as the key directory has them
        key_files = {var: self.keys.private_key_path(name) for var, name in (properties.get("key_files") or {}).items()}
        extravars.update({var: str(file) for var, file in key_files.items()})
        result = run_playbook(path, inventory=hosts, extravars=extravars, project_dir=self.project_dir,
                              private_keys=[private_key, *key_files.values()], secrets=secrets,
                              progress=self.progress,
                              timeout=self.timeout,
                              forks=max(1, min(len(properties["hosts"]), 20)))
        return Live(KIND, physical, properties, {"ran": True, "changed": result.total_changed,
                                                 "hosts": [h["name"] for h in properties["hosts"]]})
