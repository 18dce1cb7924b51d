"""Which servers a scale-in removes: fewest sessions in flight, the newest first among equals."""

from __future__ import annotations

from crane_iac.autoscaler.removal import choose
from crane_iac.scaling import TierHost

HOSTS = tuple(TierHost(f"appdomain.shop/container.web-{i}", "container", f"shop-web-{i}", i) for i in (1, 3, 2))


def names(hosts: tuple[TierHost, ...]) -> list[str]:
    return [h.physical for h in hosts]


def test_the_server_with_the_fewest_sessions_goes() -> None:
    removal = choose(HOSTS, {"shop-web-1": 0, "shop-web-3": 4, "shop-web-2": 2}, 1)
    assert names(removal.removed) == ["shop-web-1"] and names(removal.kept) == ["shop-web-3", "shop-web-2"]
    assert not removal.newest and "removes shop-web-1 (0 sessions; shop-web-3 4, shop-web-2 2)" in removal.reason


def test_among_equals_the_newest_goes_the_last_listed() -> None:
    removal = choose(HOSTS, {"shop-web-1": 1, "shop-web-3": 0, "shop-web-2": 0}, 1)
    assert names(removal.removed) == ["shop-web-2"] and removal.newest  # web-2 joined last (listed last)


def test_without_the_balancers_figures_the_newest_go() -> None:
    removal = choose(HOSTS, None, 2)
    assert names(removal.removed) == ["shop-web-3", "shop-web-2"] and names(removal.kept) == ["shop-web-1"]
    assert removal.newest and "could not be read" in removal.reason


def test_a_server_the_balancer_does_not_list_counts_as_idle() -> None:
    removal = choose(HOSTS, {"shop-web-1": 3, "shop-web-2": 5}, 1)
    assert names(removal.removed) == ["shop-web-3"] and not removal.newest
