"""The ``crane`` command: the only module that wires config, loader, state, provider and engine together."""

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

from crane_iac import __version__

if TYPE_CHECKING:
    from crane_iac.config import Project, StackConfig
    from crane_iac.loader import LoadedStack
    from crane_iac.planner.model import Plan
    from crane_iac.providers.libvirt import LibvirtProvider
    from crane_iac.state.sql import SqlStateStore


T = TypeVar("T")


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):  # fast path: no heavy imports
        print(f"crane {__version__}")
        return
    import typer

    from crane_iac.errors import CraneError, DiagnosticsError

    try:
        code = _app()(standalone_mode=False)
    except DiagnosticsError as exc:
        for d in exc.diagnostics:
            print(f"error: {d}", file=sys.stderr)
        print(f"{len(exc.diagnostics)} error(s); nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except CraneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Abort:
        print("Aborted; nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error from the command-line parser
            exc.show()
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


@dataclass
class Session:
    """One CLI invocation's project, stack and lazily opened store and provider."""

    directory: Path
    stack_option: str | None
    var_options: list[str] = field(default_factory=list)
    _project: "Project | None" = None
    _store: "SqlStateStore | None" = None

    @property
    def project(self) -> "Project":
        if self._project is None:
            from crane_iac.config import find_project, load_project

            self._project = load_project(find_project(self.directory.resolve()))
        return self._project

    def stack(self) -> "tuple[str, StackConfig]":
        return self.project.stack(self.stack_option)

    def load(self) -> "LoadedStack":
        from crane_iac.errors import ConfigError
        from crane_iac.loader import load_stack

        name, config = self.stack()
        overrides: dict[str, str] = {}
        for item in self.var_options:
            key, sep, val = item.partition("=")
            if not sep:
                raise ConfigError(f"--var {item!r}: use --var name=value")
            overrides[key.strip()] = val
        variables = self.project.resolve_vars(config, overrides)
        path = self.project.root / config.file
        if not path.is_file():
            raise ConfigError(f"{self.project.path}: stack {name!r} names {config.file}, which does not exist")
        return load_stack(path, variables)

    @property
    def store(self) -> "SqlStateStore":
        if self._store is None:
            from crane_iac.state.backends import open_store

            self._store = open_store(self.project.state_url())  # type: ignore[assignment]
        assert self._store is not None
        return self._store

    @contextmanager
    def provider(self, mutating: bool, meanwhile: Callable[[], T] = lambda: None,  # type: ignore[assignment,return-value]
                 lock_timeout: float = 0.0, read: bool = False) -> "Iterator[tuple[LibvirtProvider, T, Any]]":
        """Connect to the stack's hypervisor (and, with ``read``, read everything on it) in the background while
        ``meanwhile`` runs: loading a big sandbox, or 10,000 round trips to a real host, take as long as running
        a big stack file. Yields the provider, what ``meanwhile`` returned, and what was read (or None)."""
        from concurrent.futures import ThreadPoolExecutor

        from crane_iac.providers.libvirt import LibvirtProvider

        _, config = self.stack()
        opened: list[LibvirtProvider] = []

        def connect() -> Any:
            opened.append(LibvirtProvider(config.uri, sandbox_dir=self.project.root / ".crane", mutating=mutating,
                                          domain_type=config.domain_type, lock_timeout=lock_timeout,
                                          address_timeout=config.address_timeout,
                                          shutdown_timeout=config.shutdown_timeout))
            return opened[0].read_all() if read else None

        with ThreadPoolExecutor(1, thread_name_prefix="crane-connect") as pool:
            background = pool.submit(connect)
            try:
                extra = meanwhile()
                lives = background.result()
            except BaseException:
                background.exception()  # let the connection finish, then close it
                for provider in opened:
                    provider.close()
                raise
        try:
            yield opened[0], extra, lives
        finally:
            opened[0].close()

    @contextmanager
    def locked(self, operation: str, timeout: float) -> Iterator[str]:
        name, _ = self.stack()
        self.store.acquire_lock(name, operation, timeout)
        try:
            yield name
        finally:
            self.store.release_lock(name)


def _colour() -> bool:
    """Colour only on a terminal, and never under CI or NO_COLOR."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and not os.environ.get("CI")


def _app() -> Any:
    import typer

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                      help="crane: declarative infrastructure as code for libvirt and XenServer.")
    state_app = typer.Typer(help="Inspect recorded state.", no_args_is_help=True)
    app.add_typer(state_app, name="state")

    Stack = Annotated[Optional[str], typer.Option("--stack", "-s", help="Stack name from crane.toml.")]  # noqa: UP045
    Vars = Annotated[Optional[list[str]], typer.Option("--var", help="Set a stack variable: name=value.")]  # noqa: UP045
    Chdir = Annotated[Path, typer.Option("--chdir", "-C", help="Project directory (holds crane.toml).")]
    Targets = Annotated[Optional[list[str]], typer.Option("--target", help="Only this address and what it needs.")]  # noqa: UP045
    Replaces = Annotated[Optional[list[str]], typer.Option("--replace", help="Force replacement of this address.")]  # noqa: UP045
    Refresh = Annotated[str, typer.Option("--refresh", help="Read live state first: true or false.")]
    Parallelism = Annotated[int, typer.Option("--parallelism", min=1, max=256, help="Provider calls at once.")]
    LockTimeout = Annotated[float, typer.Option("--lock-timeout", min=0, help="Seconds to wait for the lock.")]

    def truth(text: str) -> bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise typer.BadParameter(f"{text!r} is not true or false", param_hint="--refresh")

    def session(chdir: Path, stack: str | None, var: list[str] | None = None) -> Session:
        return Session(chdir, stack, list(var or []))

    @app.callback(invoke_without_command=True)
    def root(version: Annotated[bool, typer.Option("--version", "-V", help="Print the version.")] = False) -> None:
        if version:
            print(f"crane {__version__}")
            raise typer.Exit(0)

    @app.command()
    def validate(stack: Stack = None, var: Vars = None, chdir: Chdir = Path(".")) -> None:
        """Check a stack without contacting a hypervisor."""
        s = session(chdir, stack, var)
        loaded = s.load()
        print(f"Stack {s.stack()[0]!r} is valid: {len(loaded.desired)} resources.")

    def _plan(s: Session, *, refresh: bool, targets: list[str] | None, replace: list[str] | None,
              destroy: bool, mutating: bool) -> "Plan":
        from crane_iac.engine.planning import plan_stack

        name, _ = s.stack()
        with s.provider(mutating, lambda: (s.load(), s.store.read(name)), read=refresh) as (provider, (loaded, state),
                                                                                           lives):
            return plan_stack(name, loaded, state, provider, refresh=refresh, targets=targets or [],
                              replace=replace or [], destroy=destroy, lives=lives)

    @app.command()
    def plan(
        stack: Stack = None, var: Vars = None, chdir: Chdir = Path("."),
        out: Annotated[Optional[Path], typer.Option("--out", help="Save the plan for `crane apply FILE`.")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
        target: Targets = None, replace: Replaces = None, refresh: Refresh = "true",
        destroy: Annotated[bool, typer.Option("--destroy", help="Plan to destroy everything.")] = False,
        detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode",
                                                        help="Exit 0: no changes, 1: error, 2: changes.")] = False,
    ) -> int:
        """Show what apply would change."""
        from crane_iac.render import render_plan

        s = session(chdir, stack, var)
        result = _plan(s, refresh=truth(refresh), targets=target, replace=replace, destroy=destroy, mutating=False)
        if as_json:
            print(result.to_json())
        else:
            print(render_plan(result, colour=_colour()))
        if out is not None:
            out.write_text(result.to_json())
            if not as_json:
                print(f"\nSaved the plan to {out}; apply it with: crane apply {out}")
        return 2 if detailed_exitcode and result.has_changes else 0

    def _apply(s: Session, saved: Path | None, *, auto_approve: bool, parallelism: int, lock_timeout: float,
               refresh: bool, targets: list[str] | None, replace: list[str] | None, destroy: bool) -> int:
        from crane_iac.engine.apply import Applier
        from crane_iac.engine.planning import plan_stack
        from crane_iac.errors import CraneError, StalePlanError
        from crane_iac.planner.model import Plan
        from crane_iac.render import Progress, render_plan

        colour = _colour()
        with s.locked("destroy" if destroy else "apply", lock_timeout) as name:
            state = s.store.read(name)
            if saved is not None:
                try:
                    the_plan = Plan.from_json(saved.read_text())
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise CraneError(f"{saved}: not a crane plan file ({exc})") from None
                if the_plan.stack != name:
                    raise StalePlanError(f"{saved} was made for stack {the_plan.stack!r}, not {name!r}; "
                                         f"use --stack {the_plan.stack} or make a new plan")
                if (the_plan.serial, the_plan.lineage) != (state.serial, state.lineage):
                    raise StalePlanError(f"{saved} is stale: the state of stack {name!r} changed since it was made "
                                         f"(serial {the_plan.serial} → {state.serial}); run `crane plan` again")
            with s.provider(True, s.load if saved is None else lambda: None, lock_timeout,
                            read=saved is None and refresh) as (provider, loaded, lives):
                if saved is None:
                    assert loaded is not None
                    the_plan = plan_stack(name, loaded, state, provider, refresh=refresh, targets=targets or [],
                                          replace=replace or [], destroy=destroy, lives=lives)
                    print(render_plan(the_plan, colour=colour), flush=True)
                    if not the_plan.has_changes:
                        return 0
                    if not auto_approve:
                        if not sys.stdin.isatty():
                            raise CraneError("no terminal to confirm on: pass --auto-approve or apply a saved plan")
                        import typer as _typer

                        if not _typer.confirm("Apply these changes?", default=False):
                            print("Nothing was changed.")
                            return 1
                started = time.monotonic()

                progress = Progress(sys.stdout, live=colour)
                outputs = {a: r.outputs for a, r in state.resources.items()}
                try:
                    result = Applier(the_plan, s.store, provider, parallelism=parallelism, outputs=outputs,
                                     report=progress.report).run()
                finally:
                    progress.finish()
            elapsed = time.monotonic() - started
            print(f"\nApply {'complete' if result.ok else 'FAILED'}: {len(result.done)} done, {len(result.failed)} "
                  f"failed, {len(result.skipped)} skipped in {elapsed:.1f}s ({s.store.rows_written} state rows "
                  "written).")
            for event in result.failed:
                print(f"error: {event.address}: {event.detail}", file=sys.stderr)
            return 0 if result.ok else 1

    @app.command()
    def apply(
        plan_file: Annotated[Optional[Path], typer.Argument(help="A plan saved with `crane plan --out`.")] = None,  # noqa: UP045
        stack: Stack = None, var: Vars = None, chdir: Chdir = Path("."),
        auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Skip the confirmation.")] = False,
        parallelism: Parallelism = 10, lock_timeout: LockTimeout = 0.0, refresh: Refresh = "true",
        target: Targets = None, replace: Replaces = None,
    ) -> int:
        """Apply a saved plan, or plan and apply after confirmation."""
        return _apply(session(chdir, stack, var), plan_file, auto_approve=auto_approve, parallelism=parallelism,
                      lock_timeout=lock_timeout, refresh=truth(refresh), targets=target, replace=replace,
                      destroy=False)

    @app.command()
    def destroy(
        stack: Stack = None, var: Vars = None, chdir: Chdir = Path("."),
        auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Skip the confirmation.")] = False,
        parallelism: Parallelism = 10, lock_timeout: LockTimeout = 0.0, target: Targets = None,
    ) -> int:
        """Destroy everything the stack manages."""
        return _apply(session(chdir, stack, var), None, auto_approve=auto_approve, parallelism=parallelism,
                      lock_timeout=lock_timeout, refresh=True, targets=target, replace=None, destroy=True)

    @app.command()
    def refresh(stack: Stack = None, chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
        """Update state from the hypervisor without changing infrastructure."""
        from crane_iac.engine.refresh import refreshed_records

        s = session(chdir, stack)
        with s.locked("refresh", lock_timeout) as name:
            state = s.store.read(name)
            with s.provider(False, lambda: None, read=True) as (_provider, _nothing, lives):
                committed = refreshed_records(lives, name, state)
            if committed:
                s.store.commit(name, committed)
            print(f"Refreshed stack {name!r}: {len(committed)} of {len(state.resources)} records updated.")

    @app.command()
    def output(
        name: Annotated[Optional[str], typer.Argument(help="One output.")] = None,  # noqa: UP045
        stack: Stack = None, chdir: Chdir = Path("."),
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> int:
        """Show the stack's outputs."""
        from crane_iac.errors import CraneError
        from crane_iac.render import value

        s = session(chdir, stack)
        outputs = s.store.read(s.stack()[0]).outputs
        if name is not None:
            if name not in outputs:
                raise CraneError(f"no output {name!r}; the stack has: {', '.join(sorted(outputs)) or 'none'}")
            print(json.dumps(outputs[name]) if as_json else value(outputs[name]))
            return 0
        if as_json:
            print(json.dumps(outputs, indent=2, sort_keys=True))
        else:
            for key in sorted(outputs):
                print(f"{key} = {value(outputs[key])}")
        return 0

    @app.command()
    def graph(stack: Stack = None, var: Vars = None, chdir: Chdir = Path(".")) -> None:
        """Print the stack's dependency graph in DOT."""
        from crane_iac.planner.graph import to_dot

        print(to_dot(session(chdir, stack, var).load().dependencies()), end="")

    @app.command("force-unlock")
    def force_unlock(stack: Stack = None, chdir: Chdir = Path(".")) -> None:
        """Remove a stack's lock left by a run that is gone."""
        s = session(chdir, stack)
        name, _ = s.stack()
        info = s.store.lock_info(name)
        s.store.release_lock(name)
        print(f"Unlocked stack {name!r}" + (f" (was held by {info.holder})." if info else " (it was not locked)."))

    @state_app.command("list")
    def state_list(stack: Stack = None, chdir: Chdir = Path(".")) -> None:
        """List recorded resources."""
        s = session(chdir, stack)
        for address in sorted(s.store.read(s.stack()[0]).resources):
            print(address)

    @state_app.command("show")
    def state_show(address: str, stack: Stack = None, chdir: Chdir = Path(".")) -> None:
        """Show one recorded resource."""
        from crane_iac.errors import CraneError

        s = session(chdir, stack)
        rec = s.store.read(s.stack()[0]).resources.get(address)
        if rec is None:
            raise CraneError(f"no resource {address!r} in state; see `crane state list`")
        print(json.dumps({"address": rec.address, "kind": rec.kind, "name": rec.physical,
                          "properties": rec.properties, "outputs": rec.outputs,
                          "dependencies": rec.dependencies, "protect": rec.protect}, indent=2, sort_keys=True))

    @state_app.command("history")
    def state_history(stack: Stack = None, chdir: Chdir = Path("."),
                      limit: Annotated[int, typer.Option("--limit", min=1)] = 100) -> None:
        """Show the journal of recorded changes."""
        s = session(chdir, stack)
        for entry in s.store.history(s.stack()[0], limit):
            print(f"{entry.at}  serial {entry.serial:<5} {entry.action:<8} {entry.address}")

    return app
