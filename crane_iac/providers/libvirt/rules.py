"""The libvirt provider's change rules: which property changes reach a running guest, wait for a restart, or need a
new object. Pure: the planner's tests use them without a connection."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Reach
from crane_iac.providers.base import changed_fields


def _vcpus(before: Any, after: Any) -> Reach:
    """More vCPUs (within the maximum) are hot-plugged; fewer wait for a restart, as libvirt 9.0 cannot unplug
    them cleanly from a running guest."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.RESTART


def _capacity(before: Any, after: Any) -> Reach:
    """A volume grows in place; it cannot shrink."""
    return Reach.LIVE if isinstance(before, int) and isinstance(after, int) and after >= before else Reach.REPLACE


def _leases(before: Any, after: Any) -> Reach:
    """Which of a network's subnets come from a pool: only the IPv4 one changes the network (its DHCP range keeps
    to the upper half), so a change of the IPv6 one alone is crane's own record (its lease goes back with the
    apply: crane_iac/planner/leases.py)."""
    return Reach.STATE if ("ipv4" in (before or ())) == ("ipv4" in (after or ())) else Reach.REPLACE


CHANGE_RULES: dict[str, dict[str, Any]] = {
    "vm": {
        # within the defined maximum these change on the running guest
        "vcpus": _vcpus,
        "memory_mib": Reach.LIVE,
        "running": Reach.LIVE,
        "autostart": Reach.LIVE,
        "description": Reach.LIVE,
        # the persistent definition changes now and the guest boots with it: apply restarts a running guest
        "max_vcpus": Reach.RESTART,
        "max_memory_mib": Reach.RESTART,
        "kernel": Reach.RESTART,
        "initrd": Reach.RESTART,
        "cmdline": Reach.RESTART,
        # NICs and disks: a new domain
    },
    # a container's settings are its domain's definition: a new one (same UUID), which the restart brings in; its
    # NICs too, as a container has no disks to share with a replacement and keeps its fixed addresses
    "container": {
        "running": Reach.LIVE,
        "autostart": Reach.LIVE,
        **dict.fromkeys(("vcpus", "memory_mib", "nics", "init", "init_env", "root", "writable", "mounts"),
                        Reach.RESTART),
    },
    "network": {"leases": _leases},
    # the rest of a volume (pool, format, base, source, clone), a pool and a seed: a new object
    "volume": {"capacity_gib": _capacity},
    # a pool stopped outside crane is started again
    "pool": {"active": Reach.LIVE},
}
#: a volume made from an image or a copy may leave these out (None): the size and format of what it is made from
FROM_ORIGIN = ("capacity_gib", "format")
#: what libvirt cannot report of a volume (what it was made from): kept from state
VOLUME_ORIGIN = ("source", "clone")
#: a seed's contents and pool; the rest of what its volume reports (size, format) follows from them
SEED_FIELDS = ("pool", "user_data", "meta_data", "network_config")
#: what libvirt cannot report of a pool: facts about its past (whether crane built its directory, and which
#: directories it made), which only state knows
POOL_FACTS = ("built", "made_dirs")
#: the keys of each kind that libvirt cannot report back, which refresh takes from state (``Provider.unreadable``)
UNREADABLE: dict[str, frozenset[str]] = {
    # a restored volume's snapshot, kept only by such a volume
    "volume": frozenset({*VOLUME_ORIGIN, "snapshot"}),
    # what a snapshot copies
    "snapshot": frozenset({"volume"}),
    "cloudinit": frozenset(SEED_FIELDS) - {"pool"},
    "pool": frozenset(POOL_FACTS),
    # which of a network's subnets lease their hosts' addresses (the DHCP range keeps to the other half): crane's
    # own fact, which libvirt's XML does not keep as such
    "network": frozenset({"leases"}),
}
#: in-place changes that change outputs: a VM started or stopped gains or loses its addresses
#: A container (re)started keeps its UUID but comes up empty (its writable paths are tmpfs): what configured it
#: (a configuration run names its hosts' UUIDs) must run again, so a start or restart changes its outputs too
OUTPUT_FIELDS: dict[str, frozenset[str]] = {"vm": frozenset({"running"}), "container": frozenset({"running", "nics"})}
#: outputs an in-place change leaves as they are: a VM started, stopped or restarted keeps its UUID and its IPv6
#: addresses (the SLAAC ones of its MACs, which only a new VM changes: its NICs cannot change in place); only its
#: DHCP addresses may change. Not a container's: its restart must read as new outputs, so that the configuration
#: runs naming its UUID run again on the empty container, and its addresses change in place with its NICs
KEPT_OUTPUTS: dict[str, frozenset[str]] = {"vm": frozenset({"uuid", "ipv6", "ipv6_addresses"})}
#: what the plan says of a change that waits for apply to restart the guest
NOTES = {"vm": {Reach.RESTART: "restarts the guest"}, "container": {Reach.RESTART: "restarts the container"},
         "network": {Reach.STATE: "recorded in state only; nothing on the hypervisor changes"}}


def diff_properties(kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    """The libvirt provider's judgement of a change. What libvirt cannot report comes from state; missing there (an
    object adopted after a crash, its upload perhaps unfinished) it differs from the stack: the object is replaced."""
    if kind == "volume":
        after = {k: before[k] if v is None and k in FROM_ORIGIN and k in before else v for k, v in after.items()}
    elif kind == "cloudinit":
        before, after = {k: before.get(k) for k in SEED_FIELDS}, {k: after.get(k) for k in SEED_FIELDS}
    elif kind == "snapshot":  # its pool and what it copies; its size and format are the copy's
        before, after = {k: before.get(k) for k in ("pool", "volume")}, {k: after.get(k) for k in ("pool", "volume")}
    elif kind == "pool":
        # facts about the past, not settings; and a pool crane manages runs (a record from before crane read
        # ``active`` is of a running pool)
        before = {"active": True, **{k: v for k, v in before.items() if k not in POOL_FACTS}}
        after = {**after, "active": True}
    if before == after:  # the usual case, compared in C
        return []
    changes = changed_fields(before, after, CHANGE_RULES.get(kind, {}), OUTPUT_FIELDS.get(kind, frozenset()),
                             NOTES.get(kind))
    return changes


def restarts(kind: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether changing a VM or container from ``before`` to ``after`` needs it restarted (a new definition)."""
    return any(f.reach is Reach.RESTART for f in diff_properties(kind, before, after))


def replacement_names(kind: str, physical: str, properties: dict[str, Any]) -> Iterator[str]:
    """Names for a replacement made before the old object goes (create_before_destroy): a generation suffix,
    ``web`` → ``web-r2`` → ``web-r3``, for a guest without disks or a volume. A guest with disks would share them
    with its replacement, a container with fixed addresses or mounts would share those, and a second network or pool
    would claim the same bridge or directory: refused."""
    if kind == "vm" and properties.get("disks"):
        raise ProviderError(f"its disks ({', '.join(properties['disks'])}) would be used by two guests at once; "
                            "drop create_before_destroy, or let the replacement have disks of its own")
    if kind == "container" and (properties.get("nics") or properties.get("mounts")):
        shared = "fixed addresses" if properties.get("nics") else "mounted directories"
        raise ProviderError(f"its {shared} would be used by two containers at once; drop create_before_destroy "
                            "(a container restarts in place for every change but its name)")
    if kind not in ("vm", "volume", "container"):
        raise ProviderError(f"a second {kind} would claim the same bridge or directory as the one it replaces; "
                            "drop create_before_destroy")
    match = re.fullmatch(r"(.*)-r(\d+)", physical)
    base, generation = (match.group(1), int(match.group(2))) if match else (physical, 1)
    return (f"{base}-r{n}" for n in itertools.count(generation + 1))
