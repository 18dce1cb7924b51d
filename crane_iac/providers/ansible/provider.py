"""AnsibleProvider: the configuration companion of a hypervisor provider. It serves the kinds that are not
hypervisor objects (``ssh_key``, ``configuration``) on the endpoint whose hypervisor it is opened alongside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live
from crane_iac.providers.ansible import configurations
from crane_iac.providers.ansible.configurations import Configurations
from crane_iac.providers.ansible.inventory import inventory
from crane_iac.providers.ansible.keys import SshKeys
from crane_iac.providers.ansible.runs import Progress
from crane_iac.providers.base import CreateRequest, DeleteRequest, KindHandler, Provider, UpdateRequest, changed_fields


class AnsibleProvider(Provider):
    """SSH keys in ``key_dir`` and playbook runs against hosts; with ``reaches_guests`` False (the embedded sandbox,
    where no guest runs) a configuration records that it did not run instead of running. Relative playbook paths
    are the project's (``project_dir``), which is also the runs' working directory. ``progress`` gets one line per
    host and task (started, ok, changed, failed)."""

    provider_type = "ansible"
    kinds = ("ssh_key", "configuration")
    max_parallelism = 4  # each run is an ansible-playbook process and its SSH connections, on a machine crane shares

    def __init__(self, *, reaches_guests: bool, key_dir: Path, project_dir: Path, progress: Progress | None = None,
                 timeout: int = 900, ssh_timeout: float = 60.0) -> None:
        self._reaches_guests = reaches_guests
        self.keys = SshKeys(key_dir)
        self.configurations = Configurations(self.keys, reaches_guests=reaches_guests, project_dir=project_dir,
                                             progress=progress, timeout=timeout, ssh_timeout=ssh_timeout)
        self.handlers: dict[str, KindHandler] = {"ssh_key": self.keys, "configuration": self.configurations}

    @property
    def reaches_guests(self) -> bool:
        return self._reaches_guests

    @property
    def listed_kinds(self) -> frozenset[str]:
        """Keys are files crane can list (one deleted is drift); a configuration is only what state recorded."""
        return frozenset({"ssh_key"})

    def unreadable(self, kind: str) -> frozenset[str]:
        """Nothing: a key's files say all of it (its path and type), and a configuration, never listed, is what state
        recorded as a whole."""
        return frozenset()

    def read_all(self) -> list[Live]:
        return self.keys.read_all()

    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        if kind == "configuration":
            return configurations.diff(before, after)
        return changed_fields(before, after, {})  # another key is a new key

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        if kind == "configuration":
            return self.configurations.problems(properties)
        return self.keys.problems(properties)

    def remark(self, kind: str, properties: dict[str, Any]) -> str | None:
        """What the plan should say beside a change of this resource: why a configuration will not run."""
        return self.configurations.remark(properties) if kind == "configuration" else None

    def create(self, request: CreateRequest) -> Live:
        return self.handlers[request.kind].create(request.physical, request.properties, request.owner)

    def update(self, request: UpdateRequest) -> Live:
        return self.handlers[request.kind].update(request.physical, request.before, request.after)

    def delete(self, request: DeleteRequest) -> None:
        self.handlers[request.kind].delete(request.physical, request.properties)

    def inventory(self, configurations: list[dict[str, Any]]) -> dict[str, Any]:
        """The inventory of the configurations' hosts, each with its key's private key path as this key directory
        has it (for ``crane output --ansible-inventory``)."""
        paths = {}
        for config in configurations:
            try:
                paths[config["key"]] = str(self.keys.private_key_path(config["key"]))
            except ProviderError:  # a key not applied yet: its hosts are listed without one
                paths[config["key"]] = ""
        return inventory(configurations, paths)
