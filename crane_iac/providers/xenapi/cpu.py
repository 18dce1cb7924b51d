"""A heterogeneous pool's common CPU features: each host's ``cpu_info["features"]`` (32-bit words in hex, joined
by ``-``, as xapi writes them), ANDed word by word. A host whose features are more than the mask needs the mask
set (``xe host-set-cpu-features``, or ``host.set_cpu_features`` where the pool's version has it) and a reboot
before a VM started elsewhere can resume on it after a migration, and before it can join a pool of the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def parse(features: str) -> list[int]:
    return [int(word, 16) for word in features.replace(" ", "").split("-") if word]


def render(words: list[int]) -> str:
    return "-".join(f"{word:08x}" for word in words)


@dataclass(frozen=True, slots=True)
class CpuMask:
    """The common mask of a pool's hosts, and the hosts (by name) whose features exceed it."""

    mask: str
    needing: tuple[str, ...]


def common_mask(hosts: dict[str, dict[str, Any]]) -> CpuMask | None:
    """From host records (``host.get_all_records``): the mask, or None for a pool without CPU features reported."""
    found = {rec["name_label"]: parse(rec.get("cpu_info", {}).get("features", "")) for rec in hosts.values()}
    found = {name: words for name, words in found.items() if words}
    if not found:
        return None
    width = min(len(words) for words in found.values())
    mask = [~0 & 0xFFFFFFFF] * width
    for words in found.values():
        mask = [m & w for m, w in zip(mask, words, strict=False)]
    needing = tuple(sorted(name for name, words in found.items() if words[:width] != mask))
    return CpuMask(render(mask), needing)


def remark(mask: CpuMask | None) -> str | None:
    """What a plan says of a VM on a pool whose hosts' CPUs differ: where it could not resume after a migration."""
    if mask is None or not mask.needing:
        return None
    return (f"the pool's CPUs differ: a VM started on {', '.join(mask.needing)} could not resume on the other hosts "
            f"until they take the common feature mask {mask.mask} (xe host-set-cpu-features, then a reboot)")
