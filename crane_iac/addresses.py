"""Resource addresses: ``kind.name``, nested under components as ``appdomain.shop/vm.web-1``."""

from __future__ import annotations


def make_address(kind: str, name: str, parent: str | None = None) -> str:
    """The address of a resource of ``kind`` named ``name`` under the ``parent`` address."""
    own = f"{kind}.{name}"
    return f"{parent}/{own}" if parent else own


def is_within(address: str, target: str) -> bool:
    """True when ``address`` is ``target`` itself or a resource nested under it."""
    return address == target or address.startswith(target + "/")

