"""A heterogeneous pool's common CPU features: each host's ``cpu_info["features"]`` (32-bit words in hex, joined
by ``-``, as xapi writes them), ANDed word by word. A host whose features are more than the mask needs the mask
set (``xe host-set-cpu-features``, or ``host.set_cpu_features`` where the pool's version has it) and a reboot
before a VM started elsewhere can resume on it after a migration, and before it can join a pool of the others.

``crane xen cpu-mask`` reads the hosts (``pool_cpus``), prints the commands (``PoolCpus.commands``) and, asked to,
sets the mask through the API (``set_masks``). ``host.set_cpu_features`` was removed in XenServer 7.0 (Dundee),
whose pools level the CPU features a VM sees themselves at its boot: there it answers ``MESSAGE_REMOVED``, and
the commands are for a pool before 7.0. A host given fewer feature words than another takes the missing words as
zero (a feature not every host reports is not common); a mask cannot level CPUs of different vendors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crane_iac.providers.xenapi.session import Connection

#: XenAPI's answers to a message a pool's version does not offer
NOT_OFFERED = ("MESSAGE_REMOVED", "MESSAGE_METHOD_UNKNOWN")


def parse(features: str) -> list[int]:
    return [int(word, 16) for word in features.replace(" ", "").split("-") if word]


def render(words: list[int]) -> str:
    return "-".join(f"{word:08x}" for word in words)


def _padded(mask: list[int], width: int) -> list[int]:
    """``mask`` as ``width`` words: words the mask has not are zero (features not every host has)."""
    return (mask + [0] * width)[:width]


@dataclass(frozen=True, slots=True)
class CpuMask:
    """The common mask of a pool's hosts, and the hosts (by name) whose features exceed it."""

    mask: str
    needing: tuple[str, ...]


def _features(hosts: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """Each host's feature words by reference, for the hosts that report any."""
    found = {ref: parse((rec.get("cpu_info") or {}).get("features", "")) for ref, rec in hosts.items()}
    return {ref: words for ref, words in found.items() if words}


def _common(words: list[list[int]]) -> list[int]:
    mask = [0xFFFFFFFF] * max(len(w) for w in words)
    for each in words:
        mask = [m & w for m, w in zip(mask, _padded(each, len(mask)), strict=True)]
    return mask


def common_mask(hosts: dict[str, dict[str, Any]]) -> CpuMask | None:
    """From host records (``host.get_all_records``): the mask, or None for a pool without CPU features reported."""
    cpus = pool_cpus(hosts)
    return None if cpus.mask is None else CpuMask(cpus.mask, tuple(h.name for h in cpus.needing))


def _trimmed(mask: list[int], found: dict[str, list[int]]) -> list[int]:
    """The mask as long as the shortest host's features (its extra words are zero: no host lacks them all)."""
    return mask[:min(len(w) for w in found.values())]


def remark(mask: CpuMask | None) -> str | None:
    """What a plan says of a VM on a pool whose hosts' CPUs differ: where it could not resume after a migration."""
    if mask is None or not mask.needing:
        return None
    return (f"the pool's CPUs differ: a VM started on {', '.join(mask.needing)} could not resume on the other hosts "
            f"until they take the common feature mask {mask.mask} (xe host-set-cpu-features, then a reboot)")


@dataclass(frozen=True, slots=True)
class HostCpu:
    """One host's CPU: ``mask`` is what it must be set to (the common mask as many words as its own features), or
    None when its features are the common ones already; ``after_reboot`` the features a pool before 7.0 has set for
    its next boot, when they are not the ones it has now (a mask set, the host not rebooted yet)."""

    name: str
    uuid: str
    ref: str
    vendor: str
    model: str
    features: str
    mask: str | None
    after_reboot: str | None

    def command(self) -> str | None:
        """The xe command that sets this host's mask (xapi's CLI: ``host-set-cpu-features``), or None."""
        return None if self.mask is None else f"xe host-set-cpu-features uuid={self.uuid} features={self.mask}"


@dataclass(frozen=True, slots=True)
class PoolCpus:
    """A pool's hosts' CPUs (by name) and their common mask (None for a pool without CPU features reported)."""

    hosts: tuple[HostCpu, ...]
    mask: str | None

    @property
    def needing(self) -> tuple[HostCpu, ...]:
        return tuple(h for h in self.hosts if h.mask is not None)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(sorted({h.vendor for h in self.hosts if h.vendor}))

    def commands(self) -> list[str]:
        return [c for c in (h.command() for h in self.needing) if c is not None]


def pool_cpus(hosts: dict[str, dict[str, Any]]) -> PoolCpus:
    """From host records (``host.get_all_records``): each host's CPU and the mask it needs, sorted by name."""
    found = _features(hosts)
    mask = _common(list(found.values())) if found else None
    cpus = []
    for ref, rec in hosts.items():
        info = rec.get("cpu_info") or {}
        words = found.get(ref)
        own = None if mask is None or words is None else _padded(mask, len(words))
        after = info.get("features_after_reboot")
        cpus.append(HostCpu(rec["name_label"], rec.get("uuid", ""), ref, info.get("vendor", ""),
                            info.get("modelname", ""), info.get("features", ""),
                            render(own) if own is not None and own != words else None,
                            after if after and parse(after) != words else None))
    return PoolCpus(tuple(sorted(cpus, key=lambda h: h.name)),
                    None if mask is None else render(_trimmed(mask, found)))


def read_pool_cpus(conn: Connection) -> PoolCpus:
    """The pool's hosts' CPUs, in one round trip."""
    return pool_cpus(conn.call("host.get_all_records"))


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``set_masks`` did: the hosts whose mask was set (each must reboot), whether the pool's API offers
    ``host.set_cpu_features`` at all, and the hosts whose setting failed, with the pool's error."""

    set: tuple[str, ...]
    offered: bool
    failed: tuple[tuple[str, str], ...]


def set_masks(conn: Connection, cpus: PoolCpus) -> Applied:
    """``host.set_cpu_features`` on each host that needs the mask. The first answer that the message is not offered
    (a pool of XenServer 7.0 or later) ends it: nothing was set. Another refusal is that host's failure; the others
    are still tried."""
    from crane_iac.providers.xenapi.session import XenApiError

    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for host in cpus.needing:
        try:
            conn.call("host.set_cpu_features", host.ref, host.mask)
        except XenApiError as exc:
            if exc.code in NOT_OFFERED and not done:
                return Applied((), False, ())
            failed.append((host.name, str(exc)))
            continue
        done.append(host.name)
    return Applied(tuple(done), True, tuple(failed))
