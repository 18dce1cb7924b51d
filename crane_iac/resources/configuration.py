"""Configuration: one run of an Ansible playbook against hosts of the stack, as a resource of its own.

Its identity covers the playbook (by content), its variables and files, and the hosts: the plan says when the
configuration will run again, and a no-op re-plan runs nothing. It is served by the ``ansible`` companion of the
hosts' endpoint, which skips it (and says so in the plan) where no host can be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field, InstanceOf, field_validator, model_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Output, Resource, plain
from crane_iac.resources.playbooks import playbook_digest
from crane_iac.resources.registry import current_registry
from crane_iac.resources.ssh_key import SshKey


def _project_dir() -> Path | None:
    """The project a stack is loaded for: a relative playbook is its (None outside a load: the working directory)."""
    registry = current_registry()
    return registry.project_dir if registry is not None else None


def _digest(playbook: str) -> str:
    """``playbook_digest``, once per playbook in a load (an app domain's web servers share theirs)."""
    registry = current_registry()
    if registry is None:
        return playbook_digest(playbook)
    key = ("playbook_digest", playbook)
    if key not in registry.memo:
        registry.memo[key] = playbook_digest(playbook, registry.project_dir)
    digest: str = registry.memo[key]
    return digest


@runtime_checkable
class Reachable(Protocol):
    """A host crane can configure: a VM (its DHCP lease, known after apply) or a container (its fixed address)."""

    @property
    def physical_name(self) -> str: ...

    @property
    def uuid(self) -> Output: ...

    def reachable_address(self) -> str | Output: ...


class Configuration(Resource):
    """``Configuration("web-1", playbook="crane:appdomain/web.yml", hosts=[web_1], key=key,
    vars={...})``: the hosts are VMs or containers of the stack (the run waits for them). ``files`` are texts crane
    renders and the playbook writes on the hosts; ``checks`` holds, per file, a command crane runs on it locally at
    plan time (``["haproxy", "-c", "-f", "{path}"]``): a file it rejects fails the plan. ``secrets`` maps a
    variable to the name of a key crane derives from the project's key (crane_iac/projectkey.py): the run gives
    the playbook, in that variable, the path of a file holding the key in hex, on this machine, for the run alone;
    the key itself is in no property, plan, state, log, command line or ansible-runner artifact, and the playbook
    must handle it in ``no_log`` tasks. ``key_files`` likewise maps a variable to an ``SshKey`` of the stack whose
    private key the playbook should place on the hosts (an MPI cluster's user key): the run gives the playbook the
    path of that key's private key file on this machine; properties and state name only the key, and the run keeps
    the key's lines out of its messages as it does ``key``'s."""

    kind = "configuration"
    kind_rule: ClassVar[Kind | None] = Kind("configuration", provider="ansible")

    playbook: str
    hosts: list[InstanceOf[Resource]] = Field(min_length=1)
    #: where to reach each host, when not at its own address (a VM given a fixed one by its cloud-init seed)
    addresses: list[str] | None = None
    #: the inventory group the hosts are in (the playbook's ``hosts:``)
    group: str = "all"
    key: InstanceOf[SshKey]
    user: str = "root"
    vars: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    checks: dict[str, list[str]] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    key_files: dict[str, InstanceOf[SshKey]] = Field(default_factory=dict)

    @field_validator("playbook")
    @classmethod
    def _exists(cls, value: str) -> str:
        _digest(value)
        return value

    @field_validator("hosts")
    @classmethod
    def _reachable(cls, value: list[Resource]) -> list[Resource]:
        for host in value:
            if not isinstance(host, Reachable):
                raise ValueError(f"{host.address} is not a host crane can configure (a VM or a Container)")
            host.reachable_address()  # a container without an address: a ValueError saying so
        return value

    @model_validator(mode="after")
    def _one_address_each(self) -> Configuration:
        if self.addresses is not None and len(self.addresses) != len(self.hosts):
            raise ValueError(f"{len(self.addresses)} addresses for {len(self.hosts)} hosts: give one per host")
        return self

    def _addresses(self) -> list[Any]:
        if self.addresses is not None:
            return list(self.addresses)
        return [plain(host.reachable_address()) for host in self.hosts if isinstance(host, Reachable)]

    def properties(self) -> dict[str, Any]:
        # a host's UUID is in the run's identity: a host replaced or recreated (drift repaired) is configured again;
        # the secrets' names only when there are some (a run recorded before they existed is not changed by them)
        return {**({"secrets": self.secrets} if self.secrets else {}),
            **({"key_files": {var: key.physical_name for var, key in self.key_files.items()}}
               if self.key_files else {}),
            "playbook": self.playbook,
            "digest": _digest(self.playbook),
            "hosts": [{"name": host.physical_name, "address": address, "groups": [self.group],
                       "uuid": plain(host.uuid) if isinstance(host, Reachable) else None}
                      for host, address in zip(self.hosts, self._addresses(), strict=True)],
            "vars": self.vars,
            "key": self.key.physical_name,
            "user": self.user,
            "files": self.files,
            "validate": self.checks,
        }
