"""The Ansible inventory as a value derived from configurations' hosts, never a file someone edits: what a run uses,
and what ``crane output --ansible-inventory`` gives users for their own playbooks (YAML and JSON inventories
share this shape)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: the interpreter of the hosts crane configures (an app domain's containers run this host's Debian programs); a
#: host's own ``vars`` may say otherwise. Naming it saves Ansible a round trip per host to discover it.
PYTHON = "/usr/bin/python3"


def connection_vars(host: Mapping[str, Any], *, user: str, private_key_path: str) -> dict[str, Any]:
    """How Ansible reaches one host of a configuration."""
    found: dict[str, Any] = {"ansible_host": host["address"], "ansible_user": user,
                             "ansible_ssh_private_key_file": private_key_path}
    if host.get("port") is not None:
        found["ansible_port"] = host["port"]
    return found


def inventory(configurations: Iterable[Mapping[str, Any]], key_paths: Mapping[str, str], *,
              host_vars: bool = False) -> dict[str, Any]:
    """The inventory of every host the configurations name: address, user, private key path and groups (and with
    ``host_vars`` each host's own vars, as a run passes them). ``key_paths`` maps an ssh_key's name (a
    configuration's ``key``) to its private key's path, the ssh_key's ``private_key_path`` output. A host in
    several configurations is one host, in all their groups."""
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for config in configurations:
        key = key_paths.get(config["key"], "")
        for host in config["hosts"]:
            entry = hosts.setdefault(host["name"], {})
            if host_vars:
                entry.update(host.get("vars") or {})
            entry.update(connection_vars(host, user=config.get("user", "root"), private_key_path=key))
            for group in host.get("groups") or []:
                groups.setdefault(group, {"hosts": {}})["hosts"][host["name"]] = {}
    found: dict[str, Any] = {"all": {"vars": {"ansible_python_interpreter": PYTHON},
                                     "hosts": dict(sorted(hosts.items()))}}
    if groups:
        found["all"]["children"] = dict(sorted(groups.items()))
    return found
