"""A stack moved to another type of hypervisor: crane.toml gives an endpoint a new type (``provider = "xenapi"``
where it was libvirt), and the records made there keep the endpoint as it was (``Recorded.endpoint_config``).

The endpoint's former self is opened again from what the records keep, under a name of its own
(``default@libvirt``, ``objects.retired_endpoint``), read like any endpoint, and the records are planned on it: the
planner sees a resource whose endpoint changed, which is a replacement (made on the new type, deleted from the old),
said as such (``endpoint type: libvirt → xenapi``); a record the stack no longer declares is deleted from the old.
Records written before crane kept the endpoint's type (``""``) are taken to be on its type now.

Where the former endpoint cannot be opened (the host is gone, a password no longer at hand) the plan stops and
says so: deleting nothing and forgetting nothing silently; `crane state rm` lets go of those records, leaving what
is there where it is. docs/decisions/providers.md has the reasons."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from functools import cache

from crane_iac.engine.endpoints import Endpoints
from crane_iac.errors import CraneError
from crane_iac.objects import Live, retired_endpoint
from crane_iac.providers.endpoint import Endpoint
from crane_iac.state.base import StackState


@cache
def config_type(config: str) -> str:
    """The provider type a record's ``endpoint_config`` names ("" for none); every record of an endpoint has the
    same text, decoded once (10,000 records: 55 ms a plan otherwise)."""
    return str(json.loads(config).get("type", "")) if config else ""


def _where(config: str) -> str:
    uri = json.loads(config).get("uri")
    return f"at {uri}" if uri else "its sandbox"


def retirements(state: StackState, endpoints: Endpoints) -> dict[str, tuple[str, str, list[str]]]:
    """The former endpoints state's records are on, by the name they are planned under: (the declared endpoint's
    name, its recorded config, the addresses recorded there)."""
    found: dict[str, tuple[str, str, list[str]]] = {}
    for address, rec in state.resources.items():
        if not rec.endpoint_config or rec.endpoint not in endpoints.types:
            continue
        old_type = config_type(rec.endpoint_config)
        if old_type == endpoints.types[rec.endpoint]:
            continue
        name, n = retired_endpoint(rec.endpoint, old_type), 1
        while name in found and found[name][1] != rec.endpoint_config:  # the same type twice, somewhere else
            n += 1
            name = retired_endpoint(rec.endpoint, f"{old_type}-{n}")
        found.setdefault(name, (rec.endpoint, rec.endpoint_config, []))[2].append(address)
    return found


def with_retired(state: StackState, endpoints: Endpoints, lives: list[Live] | None
                 ) -> tuple[StackState, list[Live] | None]:
    """``state`` with each record of an endpoint's former type moved to the former endpoint (opened, once, and added
    to ``endpoints``), and ``lives`` with what that endpoint holds; both as they were when nothing moved."""
    found = retirements(state, endpoints)
    if not found:
        return state, lives
    resources = dict(state.resources)
    extra: list[Live] = []
    for name, (endpoint, config, addresses) in found.items():
        if name not in endpoints.providers:
            opened = _open(endpoint, config, addresses, endpoints)
            endpoints.providers[name] = opened
            endpoints.types[name] = config_type(config)
            if lives is not None:
                for live in opened.read_all():
                    live.endpoint = name
                    extra.append(live)
        for address in addresses:
            resources[address] = dataclasses.replace(resources[address], endpoint=name)
    return dataclasses.replace(state, resources=resources), (None if lives is None else [*lives, *extra])


def _open(endpoint: str, config: str, addresses: Sequence[str], endpoints: Endpoints) -> Endpoint:
    old_type = config_type(config)
    if endpoints.opener is None:
        raise CraneError(f"endpoint {endpoint!r} was {old_type} when {addresses[0]} was made, and crane cannot "
                         "open it again here")
    try:
        return endpoints.opener(endpoint, config)
    except CraneError as exc:
        shown = ", ".join(addresses[:5]) + (f" and {len(addresses) - 5} more" if len(addresses) > 5 else "")
        raise CraneError(
            f"endpoint {endpoint!r} is {endpoints.types[endpoint]} in crane.toml now, but {shown} were made on it "
            f"when it was {old_type} ({_where(config)}), and crane cannot reach that {old_type} endpoint to replace "
            f"them: {exc}. Make it reachable again (crane then makes them anew on {endpoints.types[endpoint]} and "
            f"deletes them from {old_type}), or let go of the old objects with `crane state rm` (they stay where "
            "they are), then plan again") from None
