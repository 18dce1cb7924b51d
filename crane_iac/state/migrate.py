"""Copy every stack from one state store to another (`crane state migrate --to URL`), without loss.

Each source stack is locked for the copy, so no run changes it meanwhile; a locked stack refuses the migration.
The target must hold none of the stacks; the copy is written in one transaction and read back to prove it equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crane_iac.errors import LockHeldError, StateError
from crane_iac.state.base import StateStore


@dataclass(slots=True)
class MigratedStack:
    name: str
    serial: int
    resources: int
    history: int
    intents: int
    forgotten: int
    settings: int
    jobs: int = 0


@dataclass
class MigrationReport:
    """What was copied from where to where; ``lines()`` is what the CLI prints."""

    source: str
    target: str
    stacks: list[MigratedStack] = field(default_factory=list)
    #: address pools and leases copied (shared by every stack, so copied once)
    pools: int = 0
    leases: int = 0

    def lines(self) -> list[str]:
        if not self.stacks:
            return [f"{self.source} holds no stacks; nothing was copied to {self.target}."]
        out = [f"Copied {len(self.stacks)} stack(s) from {self.source} to {self.target}:"]
        out += [f"  {s.name}: serial {s.serial}, {s.resources} resources, {s.history} history lines, "
                f"{s.intents} intents, {s.forgotten} forgotten, {s.settings} settings"
                + (f", {s.jobs} jobs" if s.jobs else "") for s in self.stacks]
        if self.pools:
            out.append(f"  and {self.pools} address pool(s) with {self.leases} lease(s)")
        out.append(f"Point crane.toml's state at {self.target} to use it; the source is left as it was.")
        return out


def migrate(source: StateStore, target: StateStore) -> MigrationReport:
    """Copy every stack of ``source`` into ``target``. Refused (StateError, nothing written) when ``target`` already
    holds any of them or a source stack is locked; ``source`` is left unchanged."""
    report = MigrationReport(source.url, target.url)
    names = source.stacks()
    clash = sorted(set(names) & set(target.stacks()))
    if clash:
        raise StateError(f"{target.url} already holds stack(s) {', '.join(map(repr, clash))}; nothing was copied: "
                         "migrate into a store without them")
    held: list[tuple[str, str]] = []
    try:
        for name in names:
            try:
                held.append((name, source.acquire_lock(name, "state migrate")))
            except LockHeldError as exc:
                raise StateError(f"cannot migrate while a run holds a stack: {exc}; nothing was copied") from None
        dumps = [source.export_stack(name) for name in names]
        target.import_stacks(dumps)
        for dump in dumps:
            copied = target.export_stack(dump.name)
            if copied != dump:
                raise StateError(f"stack {dump.name!r} reads back from {target.url} differently from "
                                 f"{source.url}; the copy is not to be trusted: remove it from the target")
            report.stacks.append(MigratedStack(dump.name, dump.serial, len(dump.resources), len(dump.history),
                                               len(dump.intents), len(dump.forgotten), len(dump.settings),
                                               len(dump.jobs)))
        pools, leases = source.ip_pools(), source.ip_leases()
        target.import_pools(pools, leases)
        if (target.ip_pools(), target.ip_leases()) != (pools, leases):
            raise StateError(f"the address pools read back from {target.url} differently from {source.url}; the "
                             "copy is not to be trusted: remove it from the target")
        report.pools, report.leases = len(pools), len(leases)
    finally:
        for name, lock_id in held:
            source.release_lock(name, lock_id)
    return report

