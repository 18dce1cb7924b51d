"""Which kinds of objects the endpoints of a stack see alike: one libvirtd's ``qemu:///system`` and ``lxc:///system``
are two endpoints (one runs guests, the other containers) with one network driver and one storage driver, so a
network made through one is there, by its name, through the other.

A provider type says, from two of its endpoints' settings and without connecting, which of its kinds they share
(``shared_kinds`` beside its opener: ``crane_iac/providers/registry.py``); endpoints of two types share nothing.
The engine gathers the answers for a stack's endpoints into an ``EndpointSharing``, and:

* the loader lets a resource use by name (``networks=[lan]``) a resource of a shared kind on another endpoint;
  everything else is still its own endpoint's alone;
* a shared object is still made, read, changed and deleted through one endpoint, its *owner*: the one the stack
  declares it on (and state records it on);
* names and host claims of a shared kind are unique across the endpoints sharing it (two networks named ``lan``
  on ``qemu:///system`` and ``lxc:///system`` are one name on one daemon);
* an object of a shared kind read through each of its endpoints is one object, kept once, on its owner.

Sharing is taken as an equivalence: when ``a`` shares networks with ``b`` and ``b`` with ``c``, ``a`` does with
``c`` (they reach one daemon's network driver).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EndpointSharing:
    """For each shared kind, the groups of endpoints (two or more each) that see one set of its objects."""

    groups: dict[str, tuple[frozenset[str], ...]] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str, Iterable[str]]]) -> EndpointSharing:
        """From (endpoint, endpoint, the kinds they share) triples, closed under sharing's transitivity."""
        parents: dict[str, dict[str, str]] = {}  # kind → a union-find forest over endpoint names

        def root(forest: dict[str, str], name: str) -> str:
            while forest.setdefault(name, name) != name:
                name = forest[name]
            return name

        for a, b, kinds in pairs:
            if a == b:
                continue
            for kind in kinds:
                forest = parents.setdefault(kind, {})
                forest[root(forest, a)] = root(forest, b)
        groups: dict[str, tuple[frozenset[str], ...]] = {}
        for kind, forest in sorted(parents.items()):
            members: dict[str, set[str]] = {}
            for name in forest:
                members.setdefault(root(forest, name), set()).add(name)
            groups[kind] = tuple(sorted((frozenset(m) for m in members.values() if len(m) > 1), key=sorted))
        return cls({kind: found for kind, found in groups.items() if found})

    def __bool__(self) -> bool:
        return bool(self.groups)

    def peers(self, endpoint: str, kind: str) -> frozenset[str]:
        """The endpoints that see ``endpoint``'s objects of ``kind``, itself included."""
        return next((group for group in self.groups.get(kind, ()) if endpoint in group), frozenset((endpoint,)))

    def shares(self, a: str, b: str, kind: str) -> bool:
        """Whether an object of ``kind`` on endpoint ``a`` is there, by its name, on endpoint ``b``."""
        return a == b or b in self.peers(a, kind)

    def scope(self, endpoint: str, kind: str) -> str:
        """The one endpoint name standing for every endpoint that sees ``endpoint``'s objects of ``kind`` (the
        first by name): names of a shared kind are unique within it."""
        return min(self.peers(endpoint, kind))

    def shared_kinds(self, a: str, b: str) -> list[str]:
        """The kinds endpoints ``a`` and ``b`` share, by name."""
        return sorted(kind for kind in self.groups if a != b and self.shares(a, b, kind))


#: no endpoint shares anything with another (one endpoint, or sandboxes)
NOTHING_SHARED = EndpointSharing()
