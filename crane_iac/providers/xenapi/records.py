"""What the pool holds, read in bulk: one ``get_all_records`` per class (one round trip each, whatever the pool's
size), and what crane makes of the records: an object's owner from its ``other_config``, XenAPI's integers (which
the wire carries as strings) as numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crane_iac.objects import Owner
from crane_iac.providers.xenapi.session import Connection

#: crane's keys in an object's other_config: the stack and the address that own it
STACK_KEY, ADDRESS_KEY = "crane/stack", "crane/address"
#: a network's properties XenServer does not hold itself (its mode, subnets, DHCP wish): crane's record, as JSON
NETWORK_KEY = "crane/network"
#: a NIC's addresses as the stack gave them (XenServer runs no DHCP server to reserve them in)
NIC_IPV4_KEY, NIC_IPV6_KEY = "crane/ipv4", "crane/ipv6"
#: the template a VM was made from (its name_label), in the VM's other_config
TEMPLATE_KEY = "crane/template"
#: XenServer's own other_config key for a VM the pool starts with itself
AUTO_POWERON = "auto_poweron"
#: the name a VM has between its clone and its owner written into it (a crash there leaves it to be found)
MAKING_PREFIX = "crane-making:"
MIB = 1024 * 1024
#: the classes the bulk read fetches
CLASSES = ("VM", "VIF", "network", "PIF", "VM_guest_metrics", "SR", "host", "host_metrics", "VDI", "VBD")


def owner_of(record: dict[str, Any]) -> Owner | None:
    """The stack and address that own the object: from crane's keys in its other_config, or, for a clone crane began
    and was interrupted before writing them, from its name (``making_name``)."""
    other = record.get("other_config") or {}
    stack, address = other.get(STACK_KEY), other.get(ADDRESS_KEY)
    if not (stack and address) and str(record.get("name_label", "")).startswith(MAKING_PREFIX):
        stack, _, address = record["name_label"].removeprefix(MAKING_PREFIX).partition("/")
    return Owner(stack, address) if stack and address else None


def owner_config(owner: Owner) -> dict[str, str]:
    return {STACK_KEY: owner.stack, ADDRESS_KEY: owner.address}


def making_name(owner: Owner) -> str:
    """The name a VM has while crane makes it: its owner's, so that a crash before the owner is written leaves a
    template crane recognises and removes the next time it makes that VM."""
    return f"{MAKING_PREFIX}{owner.stack}/{owner.address}"


def network_record(other_config: dict[str, str]) -> dict[str, Any]:
    try:
        found = json.loads(other_config.get(NETWORK_KEY) or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def is_guest(vm: dict[str, Any]) -> bool:
    """A VM crane may list: not the control domain, not a snapshot, and not a template unless crane is making it
    (a clone not provisioned yet, found after a crash)."""
    if vm.get("is_control_domain") or vm.get("is_a_snapshot"):
        return False
    return not vm.get("is_a_template") or owner_of(vm) is not None


@dataclass
class Snapshot:
    """The records of one bulk read, by class and reference."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def read(cls, conn: Connection, classes: tuple[str, ...] = CLASSES) -> Snapshot:
        return cls({name: conn.call(f"{name}.get_all_records") for name in classes})

    def of(self, name: str) -> dict[str, dict[str, Any]]:
        return self.records.get(name, {})

    def by_name(self, name: str, label: str) -> list[str]:
        """References of the ``name`` objects whose name_label is ``label``."""
        return [ref for ref, rec in self.of(name).items() if rec.get("name_label") == label]

    def templates(self, label: str) -> list[str]:
        return [ref for ref, rec in self.of("VM").items() if rec.get("is_a_template") and
                rec.get("name_label") == label and owner_of(rec) is None]

    def guest_named(self, label: str) -> str | None:
        """The reference of the guest (not a template) named ``label``, or None."""
        return next((ref for ref, rec in self.of("VM").items()
                     if rec.get("name_label") == label and is_guest(rec)), None)
