"""Hypothesis drives `crane` itself through random sequences of what users do with address pools: two projects'
stacks sharing one pool in one state database, edited at random (hosts added, removed, moved between a pool's
network and a network without a pool, renamed with ``moved()`` or ``crane state mv``; networks added, removed,
their IPv6 subnet taken from a pool, named, or dropped), planned, applied, applied with a SIGKILL at a random
failpoint, and applied both at once in two processes. After every step:

* no holder has two values of one pool, and no value is leased twice (the database's key);
* every ``bound`` lease belongs to a resource state records, and every recorded resource's pool value is leased
  to it: a lease of nothing recorded is a ``planned`` one, which the next apply uses or gives back;
* a resource keeps its value while it lives (across applies, kills, ``moved()`` and ``state mv``).

At the end one clean apply of each stack: then every lease is bound to a resource that takes it, no lease is held
by nothing, each stack plans no changes, and a destroy gives every lease back. (The store-level machine is
tests/state/test_leases_stateful.py; this one runs the whole CLI on the sandbox.)"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore
from tests.conftest import CRANE, ProjectDir, ok

HEAD = '''from crane_iac import IPv4Pool, IPv6Pool, Network, Container, moved
office = IPv4Pool("office", cidr="10.20.0.0/16", subnet_prefixlen=24)
six = IPv6Pool("six", prefix="fd00:20::/48")
wan = Network("wan", mode="isolated", ipv4="10.9.0.0/24")
'''
OFFICE = ipaddress.ip_network("10.20.0.0/16")
POINTS = ["after-intents", "after-mutation", "after-mutation:2", "after-checkpoint", "after-commit"]


@dataclass
class Host:
    ident: int
    name: str
    net: str  # a pool's network, or "wan" (a named address on a network without a pool)


@dataclass
class Stack:
    name: str
    project: ProjectDir
    #: network → how its ipv6 is given: "pool", "none", or a subnet named
    nets: dict[str, str] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)
    moves: list[tuple[str, str]] = field(default_factory=list)
    names: int = 0

    def write(self) -> None:
        lines = [HEAD]
        for net, six in sorted(self.nets.items()):
            ipv6 = {"pool": ", ipv6=six.subnet()", "none": ""}.get(six, f', ipv6="{six}"')
            lines.append(f'{net} = Network("{net}", mode="isolated", ipv4=office.subnet(){ipv6})\n')
        for host in sorted(self.hosts.values(), key=lambda h: h.ident):
            ipv4 = f'"10.9.0.{10 + host.ident}"' if host.net == "wan" else f"{host.net}.lease()"
            lines.append(f'Container("{host.name}", networks=[{host.net}], ipv4=[{ipv4}], init=["/bin/sh"], '
                         "memory_mib=64)\n")
        lines.extend(f'moved("container.{old}", "container.{new}")\n' for old, new in self.moves)
        self.project.write_stack("".join(lines))

    def fresh_name(self) -> str:
        self.names += 1
        return f"{self.name}h{self.names}"


def crane_process(project: ProjectDir, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*CRANE, *args], cwd=project.root, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})})


class World:
    def __init__(self, root: Path) -> None:
        self.url = f"sqlite:///{root / 'shared.db'}"
        self.stacks = []
        for name in ("a", "b"):
            project = ProjectDir(root / name)
            (project.root / "stacks").mkdir(parents=True)
            project.write_config(f'state = "{self.url}"\n[stacks.{name}]\nfile = "stacks/main.py"\n')
            self.stacks.append(Stack(name, project))
        self.store: StateStore | None = None
        #: (stack, host ident) → the pool address its record had while on that network
        self.seen: dict[tuple[str, int], tuple[str, str]] = {}
        self.idents = 0

    def open(self) -> StateStore:
        if self.store is None:
            self.store = open_store(self.url)
        return self.store

    def made(self) -> bool:
        """Whether the state database is there yet (the first plan makes it)."""
        return Path(self.url.removeprefix("sqlite:///")).exists()

    def recorded(self, stack: Stack) -> dict[str, dict[str, object]]:
        if not self.made():
            return {}
        return {a: r.properties for a, r in self.open().read(stack.name).resources.items()}

    def check(self) -> None:
        """The invariants that hold after every step."""
        if not self.made():
            return
        leases = self.open().ip_leases()
        values = [(x.pool, x.value) for x in leases]
        assert len(values) == len(set(values)), leases
        holders = [(x.pool, x.stack, x.address, x.slot) for x in leases]
        assert len(holders) == len(set(holders)), f"a holder with two values of one pool: {leases}"
        # a holder's values (during a move from one network to another it holds one of each network's pool)
        held = {(x.stack, x.address, x.slot, x.value): x for x in leases}
        for stack in self.stacks:
            records = self.recorded(stack)
            for x in leases:
                if x.stack == stack.name and x.state == "bound":
                    assert x.address in records, f"bound lease of nothing recorded: {x}"
            for address, props in records.items():
                if address.startswith("network.") and props.get("ipv4") \
                        and ipaddress.ip_network(str(props["ipv4"])).subnet_of(OFFICE):  # type: ignore[arg-type]
                    lease = held.get((stack.name, address, "ipv4", str(props["ipv4"])))
                    assert lease is not None and lease.pool == "office" and lease.state == "bound", \
                        (address, props, leases)
                if address.startswith("container."):
                    ip = props["nics"][0].get("ipv4")  # type: ignore[index]
                    if ip and ipaddress.ip_address(ip) in OFFICE:
                        lease = held.get((stack.name, address, "ipv4[0]", ip))
                        assert lease is not None and lease.state == "bound", (address, props, leases)
                        self.keeps(stack, address, props["nics"][0]["network"], ip)  # type: ignore[index]

    def keeps(self, stack: Stack, address: str, network: str, ip: str) -> None:
        """A host keeps its pool address while it lives on that network (renamed or not): as recorded, since its
        record stays on the network it left until an apply moves it."""
        host = next((h for h in stack.hosts.values() if f"container.{h.name}" == address), None)
        if host is None:  # recorded, no longer declared: the next apply deletes it
            return
        key = (stack.name, host.ident)
        before = self.seen.get(key)
        if before is not None and before[0] == network:
            assert before[1] == ip, f"{address} on {network} moved from {before[1]} to {ip}"
        self.seen[key] = (network, ip)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def edit(world: World, stack: Stack, data: st.DataObject) -> str:
    """One random edit of the stack file (or `crane state mv`); what was done, for the failure report."""
    pool_nets = sorted(stack.nets)
    used = {h.net for h in stack.hosts.values()}
    choices = ["add-host", "add-net"]
    if stack.hosts:
        choices += ["remove-host", "switch-host", "rename-moved", "state-mv"]
    if pool_nets:
        choices += ["six"]
    if set(pool_nets) - used:
        choices += ["remove-net"]
    what = data.draw(st.sampled_from(choices))
    if what == "add-host":
        world.idents += 1
        net = data.draw(st.sampled_from([*pool_nets, "wan"]))
        stack.hosts[world.idents] = Host(world.idents, stack.fresh_name(), net)
        what += f" {stack.hosts[world.idents]}"
    elif what == "add-net":
        free = [n for n in ("n0", "n1", "n2") if n not in stack.nets]
        if not free:
            return "no net to add"
        net = data.draw(st.sampled_from(free))
        stack.nets[net] = data.draw(st.sampled_from(["pool", "none"]))
        what += f" {net}"
    elif what == "remove-net":
        net = data.draw(st.sampled_from(sorted(set(pool_nets) - used)))
        del stack.nets[net]
        what += f" {net}"
    elif what == "six":
        net = data.draw(st.sampled_from(pool_nets))
        leased = world.open().ip_leases(stack=stack.name) if world.made() else []
        subnet = next((x.value for x in leased if x.address == f"network.{net}" and x.slot == "ipv6"), None)
        options = [o for o in ("pool", "none", subnet) if o is not None and o != stack.nets[net]]
        stack.nets[net] = data.draw(st.sampled_from(options))
        what += f" {net} → {stack.nets[net]}"
    else:
        host = stack.hosts[data.draw(st.sampled_from(sorted(stack.hosts)))]
        if what == "remove-host":  # and a move to it not applied yet (its target must be declared)
            del stack.hosts[host.ident]
            stack.moves = [(x, new) for x, new in stack.moves if new != host.name]
        elif what == "switch-host":
            host.net = data.draw(st.sampled_from([n for n in [*pool_nets, "wan"] if n != host.net] or ["wan"]))
            world.seen.pop((stack.name, host.ident), None)
        else:
            old, host.name = host.name, stack.fresh_name()
            recorded = world.recorded(stack)
            # a move to the old name not applied yet leads to the new one; one applied (or of a resource never
            # made) is dropped, as its target is declared no longer
            pending = [(x, host.name) for x, new in stack.moves if new == old and f"container.{x}" in recorded]
            stack.moves = [(x, new) for x, new in stack.moves if new != old] + pending
            if pending:
                what += " (a pending move, renamed)"
            elif what == "rename-moved":  # of a resource never made too: its planned lease is not carried over
                stack.moves.append((old, host.name))
            elif f"container.{old}" not in recorded:
                what += " (not recorded: a plain rename)"
            else:
                ok(stack.project, "state", "mv", f"container.{old}", f"container.{host.name}")
        what += f" {host}"
    stack.write()
    return what


def run(world: World, data: st.DataObject) -> str:
    """One random run: a plan, an apply, an apply SIGKILLed at a failpoint, or both stacks' applies at once."""
    stack = data.draw(st.sampled_from(world.stacks))
    what = data.draw(st.sampled_from(["plan", "plan", "apply", "apply", "killed", "both"]))
    if what == "plan":
        ok(stack.project, "plan")
    elif what == "apply":
        ok(stack.project, "apply", "--auto-approve")
    elif what == "killed":
        point = data.draw(st.sampled_from(POINTS))
        proc = crane_process(stack.project, "apply", "--auto-approve", env={"CRANE_FAILPOINT": point})
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), (point, proc.returncode, out, err)
        what += f" at {point} ({'killed' if proc.returncode else 'not reached'})"
    else:
        procs = [crane_process(s.project, "apply", "--auto-approve") for s in world.stacks]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (out, err)
    return f"{what} {stack.name}"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_edits_applies_kills_and_concurrent_applies_keep_every_lease_accounted_for(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        try:
            for stack in world.stacks:
                stack.nets["n0"] = "pool"
                stack.write()
            steps = data.draw(st.integers(min_value=3, max_value=6))
            for _ in range(steps):  # a step: an edit or two of one stack or both, then a run
                for _ in range(data.draw(st.integers(min_value=1, max_value=2))):
                    stack = data.draw(st.sampled_from(world.stacks))
                    data.draw(st.just(f"{stack.name}: {edit(world, stack, data)}"), label="edit")
                    world.check()
                data.draw(st.just(run(world, data)), label="run")
                world.check()
            for stack in world.stacks:  # a final clean apply of each
                ok(stack.project, "apply", "--auto-approve")
            world.check()
            leases = world.open().ip_leases()
            assert {x.state for x in leases} <= {"bound"}, leases
            taken = set()
            for stack in world.stacks:
                assert stack.project.crane("plan", "--detailed-exitcode").code == 0
                for net, six in stack.nets.items():
                    taken.add((stack.name, f"network.{net}", "ipv4"))
                    if six == "pool":
                        taken.add((stack.name, f"network.{net}", "ipv6"))
                taken |= {(stack.name, f"container.{h.name}", "ipv4[0]") for h in stack.hosts.values()
                          if h.net != "wan"}
                # a NIC on a network whose IPv6 subnet comes from a pool leases its SLAAC address there too
                taken |= {(stack.name, f"container.{h.name}", "ipv6[0]") for h in stack.hosts.values()
                          if stack.nets.get(h.net) == "pool"}
            assert {(x.stack, x.address, x.slot) for x in leases} == taken, "a lease held by nothing"
            for stack in world.stacks:
                ok(stack.project, "destroy", "--auto-approve")
            assert world.open().ip_leases() == []
        finally:
            world.close()

