"""The engine's one entry point, for every client: open a project's stack, lock it, refresh, plan, check a saved
plan, apply, destroy, import, and read outputs and history. The CLI parses arguments, calls this, and prints; the
autoscaler and a watch loop call it in-process.

    ws = Workspace.open(Path("."), "demo")
    plan = ws.plan()                                   # read-only: no lock, endpoints opened read-only
    with ws.locked("apply") as run:                    # the lock, the state read under it, endpoints opened
        plan = run.plan()                              # for changing them
        result = run.apply(plan, report=print)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from crane_iac.config import Project, StackConfig, find_project, load_project, read_var_file
from crane_iac.engine import leasing, provider_rules
from crane_iac.engine.endpoints import Endpoints, connected, endpoint_sharing
from crane_iac.engine.run import PlanOptions, Run, read_plan
from crane_iac.errors import ConfigError, SettingError
from crane_iac.ipam.pools import LeaseRecord, PoolRecord
from crane_iac.objects import DEFAULT_ENDPOINT
from crane_iac.state.base import (
    Fence,
    HistoryEntry,
    LockInfo,
    RunInfo,
    Setting,
    StackState,
    StateOutline,
    StateStore,
    this_process,
)
from crane_iac.tomlfile import key_line

# what a command needs only once it runs, imported then: a plan starts opening its endpoints first, and imports these
# (SQLAlchemy, the resource models, the planner: about half a second) while they open
if TYPE_CHECKING:
    from crane_iac.engine.imports import ImportReport
    from crane_iac.engine.refresh import RefreshReport
    from crane_iac.loader import LoadedStack
    from crane_iac.objects import Live
    from crane_iac.planner.model import Plan
    from crane_iac.sharing import EndpointSharing
    from crane_iac.state.migrate import MigrationReport

__all__ = ["PlanOptions", "Run", "Workspace", "read_plan"]

T = TypeVar("T")
D = TypeVar("D")


@dataclass
class Workspace:
    """A project's stack, its variables and its state store (opened on first use)."""

    project: Project
    name: str
    config: StackConfig
    overrides: dict[str, Any] = field(default_factory=dict)
    _store: StateStore | None = None
    #: the settings the last load read from state, for a reload with pinned names
    _settings: dict[str, Any] = field(default_factory=dict)
    _variables: dict[str, Any] | None = None
    _lease_values: dict[tuple[str, str, str], str] | None = None
    #: the stack's leases as state held them when the stack was loaded: the plan lists those its apply gives back
    _lease_records: list[LeaseRecord] = field(default_factory=list)

    @classmethod
    def open(cls, directory: Path, stack: str | None = None, *, variables: Mapping[str, Any] | None = None,
             var_files: Sequence[Path] = ()) -> Workspace:
        """The project whose crane.toml is in ``directory`` or above it; ``stack`` may be None when it has one.
        ``variables`` (name → value, as on the command line) win over ``var_files``, which win over defaults."""
        project = load_project(find_project(directory.resolve()))
        name, config = project.stack(stack)
        overrides: dict[str, Any] = {}
        for var_file in var_files:
            overrides.update(read_var_file(var_file))
        overrides.update(variables or {})
        return cls(project, name, config, overrides)

    # the stack and its state

    @property
    def store(self) -> StateStore:
        if self._store is None:
            from crane_iac.state.backends import open_store

            self._store = open_store(self.project.state_url())
        return self._store

    @property
    def variables(self) -> dict[str, Any]:
        if self._variables is None:
            self._variables = self.project.resolve_vars(self.config, self.overrides)
        return self._variables

    @cached_property
    def sharing(self) -> EndpointSharing:
        """Which kinds the stack's endpoints share, from crane.toml alone (no connection): worked out once, not at
        every run of the stack."""
        return endpoint_sharing(self.config.endpoints())

    @property
    def stack_file(self) -> Path:
        path = self.project.root / self.config.file
        if not path.is_file():
            raise ConfigError(f"{self.project.path}: stack {self.name!r} names {self.config.file}, which does not "
                              "exist")
        return path

    def load(self, state: StackState | None = None) -> LoadedStack:
        """Run the stack file; with ``state``, recorded resources keep the hypervisor names they were created with
        (a resource moved to a new address is the same object)."""
        return self._validated(self._load(StateOutline.of(state) if state is not None else None))

    def _load(self, state: StateOutline | None = None, first: LoadedStack | None = None) -> LoadedStack:
        """The stack run against what ``state`` lends it (None: without state); ``first``, a run without state,
        stands for this one when state adds nothing to it (no settings, no leases yet)."""
        from crane_iac.loader import load_stack, pinned_names

        path, variables = self.stack_file, self.variables
        settings = self._settings = {key: s.value for key, s in state.settings.items()} if state is not None else {}
        root = self.project.root
        # what pools lease to the stack is read with its state: a stack loaded without (crane validate) takes
        # stand-ins, and opens no state database
        leases = self._leases if state is not None else {}

        def run(leases: leasing.Leases, names: dict[str, str] | None = None) -> LoadedStack:
            return load_stack(path, variables, physical_names=names, settings=settings, project_dir=root,
                              leases=leases, sharing=self.sharing)

        loaded = first if first is not None and not settings and not leases else run(leases)
        if state is None:
            return loaded
        # a moved resource keeps its hypervisor name, and so its MACs and the SLAAC addresses it leases: the names
        # are pinned before anything is leased
        names = pinned_names(loaded, state.names)
        moved = leasing.follow_moves(loaded, leases, state.names)
        if moved is not None:  # a moved resource keeps its values: apply moves its leases with its record
            self._lease_values = moved
        if moved is not None or names is not None:
            loaded = run(self._leases, names)
        return self._leased(loaded, lambda values: run(values, names))

    def reload(self, names: dict[str, str]) -> LoadedStack:
        """The stack run again with these hypervisor names pinned (address → name)."""
        from crane_iac.loader import load_stack

        return self._validated(load_stack(self.stack_file, self.variables, physical_names=names,
                                          settings=self._settings, project_dir=self.project.root,
                                          leases=self._leases, sharing=self.sharing))

    @property
    def _leases(self) -> dict[tuple[str, str, str], str]:
        """What address pools lease to this stack's resources: (pool, address, field) → value."""
        if self._lease_values is None:
            self._lease_records = self.store.ip_leases(stack=self.name)
            self._lease_values = leasing.values_of(self._lease_records)
        return self._lease_values

    def _leased(self, loaded: LoadedStack, run: Callable[[dict[tuple[str, str, str], str]], LoadedStack]
                ) -> LoadedStack:
        """``loaded`` with every value it takes from an address pool leased (engine/leasing.py)."""
        loaded, self._lease_values = leasing.settle(loaded, self.store, self.name, self._leases, run)
        return loaded

    def _validated(self, loaded: LoadedStack) -> LoadedStack:
        """``loaded``, once each resource passed its provider type's rules (``provider_rules.checked``)."""
        return provider_rules.checked(loaded, self.config.endpoints())

    def state(self) -> StackState:
        return self.store.read(self.name)

    def outputs(self) -> dict[str, Any]:
        return self.state().outputs

    def ansible_inventory(self) -> dict[str, Any]:
        """An Ansible inventory of every host the stack's configuration runs reach, as state recorded them (address,
        groups, user, the private key's path): for the user's own playbooks, never a file someone edits."""
        from crane_iac.providers.ansible.inventory import inventory

        resources = self.state().resources.values()
        keys = {r.physical: str(r.outputs.get("private_key_path") or "") for r in resources if r.kind == "ssh_key"}
        return inventory([r.properties for r in resources if r.kind == "configuration"], keys)

    def address_pools(self) -> tuple[list[PoolRecord], list[LeaseRecord]]:
        """Every address pool of the state (shared by every stack of it) and every lease they hold."""
        return self.store.ip_pools(), self.store.ip_leases()

    def drop_pool(self, name: str) -> list[PoolRecord]:
        """Drop a pool no one holds a value from, with its networks' own pools (``crane ipam rm``)."""
        return self.store.drop_pool(name)

    def release_address(self, value: str, pool: str | None = None) -> LeaseRecord:
        """Give back a lease whose resource no stack records (``crane ipam release``)."""
        return leasing.release(self.store, value, pool)

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        return self.store.history(self.name, limit)

    # reading and planning without the lock

    @contextmanager
    def endpoints(self, *, mutating: bool, lock_timeout: float = 0.0, read: bool = False,
                  during: Callable[[], D] | None = None, meanwhile: Callable[[D | None], T] | None = None
                  ) -> Iterator[tuple[Endpoints, T | None, list[Live] | None]]:
        """``connected`` to this stack's endpoints: ``during`` runs while they connect, after the imports the stack
        run, the state read and the plan need (``_import_for_planning``); ``meanwhile`` while they are read. A plan
        runs only the stack during (about 20 MB for 10,000 resources, held through the connecting, which is the
        run's memory peak) and reads the whole state after (another 20 MB; see docs/benchmarks.md)."""
        def connecting() -> D | None:
            _import_for_planning()
            return during() if during is not None else None

        try:
            with connected(self.config.endpoints(), state_dir=self.project.root / ".crane", mutating=mutating,
                           lock_timeout=lock_timeout, read=read, during=connecting, meanwhile=meanwhile) as opened:
                yield opened
        except SettingError as exc:
            raise ConfigError(self._setting_at(exc)) from None

    def _setting_at(self, exc: SettingError) -> str:
        """An endpoint key's problem found when it was opened, at its line of crane.toml (where the stack writes it:
        on the stack for the default endpoint, else in its providers table)."""
        endpoint = exc.endpoint or DEFAULT_ENDPOINT
        loc = ["stacks", self.name] + ([] if endpoint not in self.config.providers else ["providers", endpoint])
        path = self.project.path
        try:
            line = key_line(path.read_text(), [*loc, exc.key])
        except OSError:
            line = None
        return f"{path}{f':{line}' if line else ''}: {'.'.join([*loc, exc.key])}: {exc.message}"

    def early_load(self) -> tuple[LoadedStack, int | None]:
        """The stack run with what its state lends it (settings, names, leases: ``StateOutline``), and the serial
        that state was at; with no state database yet, run without it (so that a broken stack creates none), and
        None. A plan runs this while the endpoints connect."""
        if not self._state_exists():
            return self._load(), None
        outline = self.store.outline(self.name)
        return self._validated(self._load(outline)), outline.serial

    def load_with_state(self, early: tuple[LoadedStack, int | None] | None = None
                        ) -> tuple[LoadedStack, StackState]:
        """The stack and its state. ``early`` is what ``early_load`` gave (None: run it here): the stack runs again
        only when the state read now is not the one it ran with (a first run without state, which settings, leases
        or pinned names may change; or a serial changed by another run meanwhile)."""
        loaded, serial = early if early is not None else self.early_load()
        state = self.state()
        if serial is not None and serial == state.serial:
            return loaded, state
        if serial is not None:  # another run wrote meanwhile: its leases are read again with the state it left
            self._lease_values = None
        first = loaded if serial is None else None
        return self._validated(self._load(StateOutline.of(state), first=first)), state

    def _state_exists(self) -> bool:
        """Whether the state database is there already (a server's always is; a SQLite file may not be yet)."""
        url = self.project.state_url()
        return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite://")).exists()

    def settings(self) -> dict[str, Setting]:
        return self.store.settings(self.name)

    def set_setting(self, key: str, value: Any, *, by: str, why: str, lock_timeout: float = 0.0,
                    fence: Fence | None = None, memory: Mapping[str, Any] | None = None) -> int:
        """Set (or with None, unset) a durable setting under the stack's lock, journalled with who and why; the
        stack reads it with ``setting(key, default)``. Returns the new serial. ``fence`` and ``memory``: a replicated
        loop's (``StateStore.set_setting``)."""
        with self.locked(f"setting {key}", lock_timeout=lock_timeout, connect=False, load=False) as run:
            return self.store.set_setting(self.name, key, value, by=by, why=why, expected_serial=run.state.serial,
                                          run=run.info, fence=fence, memory=memory)

    def plan(self, options: PlanOptions = PlanOptions()) -> Plan:
        """A plan made without the lock, reading the endpoints without changing them (``crane plan``)."""
        with self.endpoints(mutating=False, read=options.refresh, during=self.early_load,
                            meanwhile=self.load_with_state) as (endpoints, loaded_state, lives):
            from crane_iac.engine.planning import plan_stack

            assert loaded_state is not None
            loaded, state = loaded_state
            return plan_stack(self.name, loaded, state, endpoints, refresh=options.refresh, targets=options.targets,
                              replace=options.replace, destroy=options.destroy, lives=lives, reload=self.reload,
                              leases=self._lease_records)

    # changing things: under the lock

    @contextmanager
    def locked(self, operation: str, *, lock_timeout: float = 0.0, connect: bool = True, load: bool = True,
               read: bool = True, mutating: bool = True) -> Iterator[Run]:
        """Take the stack's lock (waiting up to ``lock_timeout`` seconds), read state under it, and (``connect``)
        open the endpoints for changing them while (``load``) the stack file runs and (``read``) the endpoints
        are read. Released on the way out, whatever happens; only this run's lock is released."""
        lock_id = self.store.acquire_lock(self.name, operation, lock_timeout)
        # the run's writes name it by the lock it holds, so the history shows them together
        info = RunInfo(lock_id, this_process(), operation, datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            state = self.state()
            if not connect:
                yield Run(self.name, self.store, self.reload, lock_id, state, None, self.load(state) if load else None,
                          None, info)
                return
            with self.endpoints(mutating=mutating, lock_timeout=lock_timeout, read=load and read,
                                during=(lambda: self.load(state)) if load else None,
                                meanwhile=lambda loaded: loaded) as (endpoints, loaded, lives):
                yield Run(self.name, self.store, self.reload, lock_id, state, endpoints, loaded, lives, info,
                          self._lease_records)
        finally:
            self.store.release_lock(self.name, lock_id)

    def refresh(self, *, lock_timeout: float = 0.0) -> RefreshReport:
        """Update state (records and stack outputs) from the endpoints without changing infrastructure."""
        with self.locked("refresh", lock_timeout=lock_timeout, mutating=False) as run:
            assert run.lives is not None and run.loaded is not None
            from crane_iac.engine.refresh import RefreshReport, refreshed_outputs, refreshed_records
            from crane_iac.engine.retired import with_retired

            assert run.endpoints is not None
            state, lives = with_retired(run.state, run.endpoints, run.lives)  # records on a former type: read there
            assert lives is not None
            committed = refreshed_records(lives, self.name, state, run.endpoints, run.endpoints.sharing)
            outputs = refreshed_outputs(run.loaded.outputs, state, committed)
            if committed or outputs != state.outputs:
                self.store.commit(self.name, committed, outputs, expected_serial=state.serial, run=run.info)
            changed = sorted(k for k in set(outputs) | set(state.outputs)
                             if outputs.get(k) != state.outputs.get(k))
            return RefreshReport(committed, len(state.resources), changed)

    def import_resource(self, address: str, physical: str | None = None, *,
                        lock_timeout: float = 0.0) -> ImportReport:
        """Adopt an object that exists on an endpoint into state at ``address``; the plan shows how it differs."""
        with self.locked("import", lock_timeout=lock_timeout, mutating=False) as run:
            assert run.lives is not None and run.loaded is not None and run.endpoints is not None
            from crane_iac.engine.imports import ImportReport, import_record
            from crane_iac.engine.planning import plan_stack

            committed = import_record(address, physical, run.loaded, run.state, run.lives, self.name)
            assert committed.record is not None
            self.store.unforget(self.name, committed.record.kind, committed.record.physical,
                                 endpoint=committed.record.endpoint)
            self.store.commit(self.name, [committed], expected_serial=run.state.serial, run=run.info)
            state = self.state()
            plan = plan_stack(self.name, run.loaded, state, run.endpoints, targets=[address], lives=run.lives,
                              reload=self.reload)
            return ImportReport(committed, plan)

    def forget(self, addresses: Sequence[str], *, lock_timeout: float = 0.0) -> list[str]:
        """Drop resources (and everything nested under them) from state without touching them."""
        from crane_iac.engine.imports import expand_addresses

        with self.locked("state rm", lock_timeout=lock_timeout, connect=False, load=False) as run:
            found = expand_addresses(addresses, run.state)
            self.store.forget(self.name, found, expected_serial=run.state.serial, run=run.info)
            return found

    def move(self, old: str, new: str, *, lock_timeout: float = 0.0) -> None:
        """Give a recorded resource a new address; its object keeps its name."""
        from crane_iac.engine.imports import check_move

        with self.locked("state mv", lock_timeout=lock_timeout, connect=False, load=False) as run:
            check_move(old, new)
            self.store.move(self.name, [(old, new)], expected_serial=run.state.serial, run=run.info)

    def migrate_state(self, url: str) -> MigrationReport:
        """Copy every stack of this project's state store to the store at ``url`` (`crane state migrate`)."""
        from crane_iac.state.backends import open_store
        from crane_iac.state.migrate import migrate

        target = open_store(url)
        try:
            return migrate(self.store, target)
        finally:
            target.close()

    def break_lock(self, lock_id: str, *, force: bool = False) -> LockInfo:
        from crane_iac.engine.locks import break_lock

        return break_lock(self.store, self.name, lock_id, force=force)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _import_for_planning() -> None:
    """Import the state store's backend (SQLAlchemy), the loader with the resource models, and the planner: about
    half a second, run while the endpoints connect (which releases the GIL: a 10,000-domain sandbox takes seconds
    to open), at no cost in memory, as the run holds these modules anyway."""
    for module in ("crane_iac.state.backends", "crane_iac.engine.planning"):
        importlib.import_module(module)
