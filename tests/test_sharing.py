"""EndpointSharing: the groups of endpoints that see one set of a kind's objects, closed under transitivity."""

from __future__ import annotations

from crane_iac.sharing import NOTHING_SHARED, EndpointSharing


def test_sharing_is_per_kind_and_transitive() -> None:
    sharing = EndpointSharing.from_pairs([("a", "b", {"network", "pool"}), ("b", "c", {"network"}),
                                          ("d", "e", set()), ("a", "a", {"vm"})])
    assert sharing.peers("c", "network") == {"a", "b", "c"}
    assert sharing.shares("a", "c", "network") and not sharing.shares("a", "c", "pool")
    assert sharing.shares("a", "b", "pool") and not sharing.shares("a", "b", "vm")
    assert sharing.shares("d", "d", "vm") and not sharing.shares("d", "e", "network")
    assert sharing.scope("c", "network") == "a" and sharing.scope("c", "pool") == "c"
    assert sharing.shared_kinds("a", "b") == ["network", "pool"] and sharing.shared_kinds("a", "d") == []
    assert "vm" not in sharing.groups and bool(sharing)


def test_nothing_shared() -> None:
    assert not NOTHING_SHARED and not EndpointSharing.from_pairs([("a", "b", ())])
    assert NOTHING_SHARED.peers("a", "network") == {"a"} and NOTHING_SHARED.scope("a", "network") == "a"
