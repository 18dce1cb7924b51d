"""``crane ipam``: the address pools of the state (shared by every stack of it), their leases and their use."""

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from crane_iac.commands.base import AsJson, Chdir, Stack, app, workspace

if TYPE_CHECKING:
    from crane_iac.engine.workspace import Workspace
    from crane_iac.ipam.pools import LeaseRecord, PoolRecord

ipam_app = typer.Typer(help="Address pools and the leases they hand out.", no_args_is_help=True)
app.add_typer(ipam_app, name="ipam")


def _workspace(chdir: Path, stack: str | None) -> "Workspace":
    """A workspace of the project: pools belong to its state, not to one stack, so any stack does."""
    from crane_iac.config import find_project, load_project

    if stack is None:
        stack = next(iter(load_project(find_project(chdir.resolve())).config.stacks))
    return workspace(chdir, stack)


def _size(network: str, reserved: list[str], subnet_prefixlen: int | None) -> int:
    """How many values a pool can hand out: addresses, or subnets for a pool that carves them."""
    from crane_iac.ipam.pools import PoolSpec

    spec = PoolSpec.parse("p", network, reserved=reserved, subnet_prefixlen=subnet_prefixlen)
    if subnet_prefixlen is None:
        return spec.space("address").size
    return int(spec.space("subnet").size // 2 ** (spec.network.max_prefixlen - subnet_prefixlen))


def _unused(pools: "list[PoolRecord]", leases: "list[LeaseRecord]") -> set[str]:
    """The pools no one holds a value from: no lease in the pool or in its networks' pools, and for a network's
    pool, no lease of its subnet either (``crane ipam rm`` drops them)."""
    held = {lease.pool for lease in leases}
    subnets = {(lease.pool, lease.value) for lease in leases}
    return {p.name for p in pools
            if p.name not in held and not any(c.parent == p.name and c.name in held for c in pools)
            and not (p.parent and (p.parent, p.network) in subnets)}


@ipam_app.command("list")
def ipam_list(stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
    """Every pool with its size, leases, free count and use; the pools no one holds a value from are named."""
    pools, leases = _workspace(chdir, stack).address_pools()
    unused = _unused(pools, leases)
    rows = []
    for pool in pools:
        size = _size(pool.network, pool.reserved, pool.subnet_prefixlen)
        held = sum(1 for lease in leases if lease.pool == pool.name)
        rows.append({"pool": pool.name, "network": pool.network, "size": size, "leased": held, "free": size - held,
                     "used": round(100 * held / size, 1) if size else 0.0, "declared_by": pool.declared_by,
                     "parent": pool.parent or None, "unused": pool.name in unused})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("No address pools.")
        return
    print(f"{'POOL':<24} {'NETWORK':<22} {'SIZE':>8} {'LEASED':>7} {'FREE':>8} {'USED':>6}  DECLARED BY")
    for r in rows:
        print(f"{r['pool']:<24} {r['network']:<22} {r['size']:>8} {r['leased']:>7} {r['free']:>8} "
              f"{r['used']:>5}%  {r['declared_by']}")
    tops = [p.name for p in pools if p.name in unused and p.parent not in unused]
    if tops:
        print(f"\nUnused (no stack holds a value from {'it' if len(tops) == 1 else 'them'}; `crane ipam rm POOL` "
              f"drops one): {', '.join(tops)}")


@ipam_app.command("show")
def ipam_show(
    pool: Annotated[str, typer.Argument(metavar="POOL", help="The pool (crane ipam list names them).")],
    stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False,
) -> None:
    """One pool's leases: address, resource, stack, state and since when."""
    from crane_iac.ipam.pools import IpamError

    pools, leases = _workspace(chdir, stack).address_pools()
    found = next((p for p in pools if p.name == pool), None)
    if found is None:
        raise IpamError(f"no pool {pool!r}; the pools are {', '.join(p.name for p in pools) or 'none'}")
    held = sorted((lease for lease in leases if lease.pool == pool),
                  key=lambda lease: ipaddress.ip_network(lease.value, strict=False))
    if as_json:
        print(json.dumps({"pool": found.name, "network": found.network, "reserved": found.reserved,
                          "subnet_prefixlen": found.subnet_prefixlen, "declared_by": found.declared_by,
                          "leases": [{"value": x.value, "stack": x.stack, "resource": x.address, "slot": x.slot,
                                      "state": x.state, "since": x.at} for x in held]}, indent=2))
        return
    size = _size(found.network, found.reserved, found.subnet_prefixlen)
    print(f"{found.name}: {found.network}, {len(held)} of {size} leased"
          f"{', reserved ' + ', '.join(found.reserved) if found.reserved else ''}")
    for x in held:
        print(f"  {x.value:<22} {x.address} ({x.slot})  stack {x.stack}  {x.state} since {x.at}")


@ipam_app.command("release")
def ipam_release(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The leased address or subnet.")],
    pool: Annotated[Optional[str], typer.Option("--pool", metavar="POOL",  # noqa: UP045
                                                help="The pool, when several lease the value.")] = None,
    stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False,
) -> None:
    """Give back a lease whose resource no stack records any longer (after `crane state rm`)."""
    lease = _workspace(chdir, stack).release_address(address, pool)
    if as_json:
        print(json.dumps({"released": {"pool": lease.pool, "value": lease.value, "stack": lease.stack,
                                       "resource": lease.address, "slot": lease.slot, "state": lease.state}},
                         indent=2))
        return
    print(f"Released {lease.value} from pool {lease.pool} (it was leased to {lease.address} in stack "
          f"{lease.stack}).")


@ipam_app.command("rm")
def ipam_rm(
    pool: Annotated[str, typer.Argument(metavar="POOL", help="The pool (crane ipam list names the unused ones).")],
    stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False,
) -> None:
    """Drop a pool no one holds a value from, with its networks' own pools (a pool with leases is refused)."""
    dropped = _workspace(chdir, stack).drop_pool(pool)
    if as_json:
        print(json.dumps({"removed": [{"pool": p.name, "network": p.network, "parent": p.parent or None}
                                      for p in dropped]}, indent=2))
        return
    others = [p.name for p in dropped if p.name != pool]
    also = f", with its networks' pools {', '.join(others)}" if others else ""
    print(f"Removed pool {pool} ({dropped[-1].network}){also}. A stack that declares it again makes it anew.")
