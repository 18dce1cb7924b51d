"""The ``crane`` command: the only module that wires config, loader, state, provider and engine together."""

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from crane_iac import __version__

if TYPE_CHECKING:
    import threading

    from crane_iac.engine.workspace import PlanOptions, Workspace
    from crane_iac.planner.model import Plan


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):  # fast path: no heavy imports
        print(f"crane {__version__}")
        return
    import typer

    from crane_iac.errors import CraneError, DiagnosticsError

    try:
        with ExitStack() as opened:  # every workspace a command opens is closed (its store's connections)
            code = _app(opened)(standalone_mode=False)
    except DiagnosticsError as exc:
        from crane_iac.console import diagnostic_lines

        for line in diagnostic_lines(exc):
            print(line, file=sys.stderr)
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


def _colour() -> bool:
    """Colour only on a terminal, and never under CI or NO_COLOR."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and not os.environ.get("CI")


@contextmanager
def _interruptible(stop: "threading.Event") -> Iterator[list[int]]:
    """The first SIGINT/SIGTERM sets ``stop`` (apply starts nothing new, finishes and records what is in flight);
    a second exits at once, and crash safety (intents, owner metadata) takes over. Yields the signals seen."""
    from crane_iac.console import stopping_on_signals

    with stopping_on_signals(
            stop, sys.stderr,
            first=lambda name: (f"\n{name}: stopping: no new operation starts; those in flight finish and are "
                                "recorded. Press Ctrl-C again to exit at once.\n"),
            again=lambda name: (f"\n{name} again: exiting at once. The next plan adopts or removes what was in "
                                "flight.\n"),
            restore_after_signal=False) as seen:
        yield seen


def _app(opened: ExitStack) -> Any:
    import typer

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                      help="crane: declarative infrastructure as code for libvirt and XenServer.")
    state_app = typer.Typer(help="Inspect and edit recorded state.", no_args_is_help=True)
    app.add_typer(state_app, name="state")
    setting_app = typer.Typer(help="Durable settings a stack reads with setting(KEY, default).", no_args_is_help=True)
    app.add_typer(setting_app, name="setting")

    Stack = Annotated[Optional[str], typer.Option("--stack", "-s", metavar="NAME",  # noqa: UP045
                                                  help="Stack name from crane.toml.")]
    Vars = Annotated[Optional[list[str]], typer.Option("--var", metavar="NAME=VALUE",  # noqa: UP045
                                                       help="Set a stack variable (repeatable).")]
    VarFiles = Annotated[Optional[list[Path]], typer.Option("--var-file", metavar="FILE",  # noqa: UP045
                                                            help="Variables from a TOML file (name = value).")]
    Chdir = Annotated[Path, typer.Option("--chdir", "-C", metavar="DIR", help="Project directory (holds crane.toml).")]
    Targets = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--target", metavar="ADDRESS", help="Only this address and what it needs (destroy: and what needs it).")]
    Replaces = Annotated[Optional[list[str]], typer.Option("--replace", metavar="ADDRESS",  # noqa: UP045
                                                           help="Force replacement of this address.")]
    Refresh = Annotated[Optional[str], typer.Option("--refresh", metavar="true|false",  # noqa: UP045
                                                    help="Read live state first (default true).")]
    Parallelism = Annotated[int, typer.Option("--parallelism", metavar="N", min=1, max=256,
                                              help="Provider calls at once.")]
    LockTimeout = Annotated[float, typer.Option("--lock-timeout", metavar="SECONDS", min=0,
                                                help="Seconds to wait for the lock.")]
    AsJson = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON.")]
    Format = Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--format", metavar="text|json|markdown", help="How to print the plan (markdown: for a pull-request comment).")]
    AutoApprove = Annotated[bool, typer.Option("--auto-approve", metavar="",
                                               help="Apply without asking (needed when stdin is not a terminal).")]

    def truth(text: str | None) -> bool:
        if text is None or text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise typer.BadParameter(f"{text!r} is not true or false", param_hint="--refresh")

    def workspace(chdir: Path, stack: str | None, var: list[str] | None = None,
                  var_file: list[Path] | None = None) -> "Workspace":
        from crane_iac.console import parse_vars
        from crane_iac.engine.workspace import Workspace

        ws = Workspace.open(chdir, stack, variables=parse_vars(var or []), var_files=list(var_file or []))
        opened.callback(ws.close)
        return ws

    @app.callback(invoke_without_command=True)
    def root(version: Annotated[bool, typer.Option("--version", "-V", metavar="", help="Print the version.")] = False,
             ) -> None:
        if version:
            print(f"crane {__version__}")
            raise typer.Exit(0)

    @app.command()
    def validate(stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path(".")) -> None:
        """Check a stack without contacting a hypervisor."""
        ws = workspace(chdir, stack, var, var_file)
        loaded = ws.load()
        print(f"Stack {ws.name!r} is valid: {len(loaded.desired)} resources.")

    def options(refresh: str | None = None, target: list[str] | None = None, replace: list[str] | None = None,
                destroy: bool = False) -> "PlanOptions":
        from crane_iac.engine.workspace import PlanOptions

        return PlanOptions(truth(refresh), tuple(target or ()), tuple(replace or ()), destroy)

    @app.command()
    def plan(
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        out: Annotated[Optional[Path], typer.Option("--out", metavar="FILE",  # noqa: UP045
                                                    help="Save the plan for `crane apply FILE`.")] = None,
        as_json: AsJson = False, format_: Format = None,
        target: Targets = None, replace: Replaces = None, refresh: Refresh = None,
        destroy: Annotated[bool, typer.Option("--destroy", metavar="", help="Plan to destroy everything.")] = False,
        detailed_exitcode: Annotated[bool, typer.Option(
            "--detailed-exitcode", metavar="",
            help="Exit 0: no changes, 1: error, 2: changes (or a setting overrides the stack).")] = False,
    ) -> int:
        """Show what apply would change."""
        how = output_format(format_, as_json)
        ws = workspace(chdir, stack, var, var_file)
        result = ws.plan(options(refresh, target, replace, destroy))
        print(show_plan(result, how), end="")
        if out is not None:
            out.write_text(result.to_json())
            if how == "text":
                flag = "" if len(ws.project.config.stacks) == 1 else f" (stack {result.stack!r}, recorded in the file)"
                print(f"\nSaved the plan to {out}{flag}; apply it with: crane apply {out}")
        # a setting that overrides the user's own value is not "no changes": the stack is not what is in effect
        return 2 if detailed_exitcode and (result.has_changes or result.overrides) else 0

    def output_format(given: str | None, as_json: bool) -> str:
        how = "json" if as_json and given is None else (given or "text")
        if how not in ("text", "json", "markdown") or (as_json and how != "json"):
            raise typer.BadParameter(f"{given!r}: use text, json or markdown (--json is --format json)",
                                     param_hint="--format")
        return how

    def show_plan(the_plan: "Plan", how: str) -> str:
        if how == "json":
            return the_plan.to_json() + "\n"
        if how == "markdown":
            from crane_iac.markdown import render_markdown

            return render_markdown(the_plan)
        from crane_iac.render import render_plan

        return render_plan(the_plan, colour=_colour()) + "\n"

    def _read_plan(path: Path) -> "Plan":
        from crane_iac.engine.workspace import read_plan

        return read_plan(path)

    def _apply(ws: "Workspace", saved: "tuple[Path, Plan] | None", *, auto_approve: bool, parallelism: int,
               lock_timeout: float, wanted: "PlanOptions") -> int:
        import threading

        from crane_iac.console import apply_verdict, failure_lines, interrupted_line
        from crane_iac.errors import CraneError
        from crane_iac.render import Progress, render_plan

        colour = _colour()
        with ws.locked("destroy" if wanted.destroy else "apply", lock_timeout=lock_timeout,
                       load=saved is None, read=wanted.refresh) as run:
            if saved is not None:
                source, the_plan = saved
                run.check_saved(the_plan, str(source))
            else:
                the_plan = run.plan(wanted)
                print(render_plan(the_plan, colour=colour), flush=True)
                if not the_plan.has_changes:
                    return 0
                if not auto_approve:
                    if not sys.stdin.isatty():
                        raise CraneError("stdin is not a terminal, so crane cannot ask for confirmation: pass "
                                         "--auto-approve to apply without asking, or save the plan (crane plan "
                                         "--out FILE) and apply that file; nothing was changed")
                    import typer as _typer

                    if not _typer.confirm("Apply these changes?", default=False):
                        print("Nothing was changed.")
                        return 1
            started = time.monotonic()
            progress = Progress(sys.stdout, live=colour)
            stop = threading.Event()
            with _interruptible(stop) as signals:
                try:
                    result = run.apply(the_plan, parallelism=parallelism, report=progress.report, stop=stop)
                finally:
                    progress.finish()
            print("\n" + apply_verdict(result, time.monotonic() - started, ws.store.rows_written))
            for line in failure_lines(result):
                print(line, file=sys.stderr)
            if the_plan.targets and the_plan.untargeted:
                print(f"Targeting was in effect: {len(the_plan.untargeted)} other resource(s) still have changes "
                      "pending; run `crane plan` to see them.")
        if result.interrupted:
            print(interrupted_line(result, "The lock is released; run `crane apply` again to finish."),
                  file=sys.stderr)
            return 128 + (signals[0] if signals else signal.SIGINT)
        return 0 if result.ok else 1

    @app.command()
    def apply(
        plan_file: Annotated[Optional[Path], typer.Argument(metavar="[PLANFILE]",  # noqa: UP045
                                                            help="A plan saved with `crane plan --out`.")] = None,
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        auto_approve: AutoApprove = False,
        parallelism: Parallelism = 10, lock_timeout: LockTimeout = 0.0, refresh: Refresh = None,
        target: Targets = None, replace: Replaces = None,
    ) -> int:
        """Apply a saved plan, or plan and apply after confirmation."""
        from crane_iac.errors import CraneError

        saved: tuple[Path, Plan] | None = None
        if plan_file is not None:
            given = [flag for flag, v in (("--var", var), ("--var-file", var_file), ("--target", target),
                                          ("--replace", replace), ("--refresh", refresh)) if v]
            if given:
                raise CraneError(f"{', '.join(given)} cannot be given with a saved plan: the plan already fixes what "
                                 f"it does; make a new plan with them (crane plan {' '.join(given)} … --out FILE)")
            saved = (plan_file, _read_plan(plan_file))
            if stack is not None and stack != saved[1].stack:
                raise CraneError(f"{plan_file} was made for stack {saved[1].stack!r}, not {stack!r}; "
                                 "drop --stack or make a new plan")
            stack = saved[1].stack
        return _apply(workspace(chdir, stack, var, var_file), saved, auto_approve=auto_approve,
                      parallelism=parallelism, lock_timeout=lock_timeout, wanted=options(refresh, target, replace))

    @app.command()
    def destroy(
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        auto_approve: AutoApprove = False,
        parallelism: Parallelism = 10, lock_timeout: LockTimeout = 0.0, target: Targets = None,
    ) -> int:
        """Destroy everything the stack manages (with --target: the targets and everything that depends on them)."""
        return _apply(workspace(chdir, stack, var, var_file), None, auto_approve=auto_approve,
                      parallelism=parallelism, lock_timeout=lock_timeout, wanted=options(target=target, destroy=True))

    @app.command()
    def watch(
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        apply_: Annotated[bool, typer.Option("--apply", metavar="",
                                             help="Apply each plan without asking (as --auto-approve).")] = False,
        debounce: Annotated[float, typer.Option("--debounce", metavar="SECONDS", min=0,
                                                help="Saves this close together make one plan.")] = 0.3,
        parallelism: Parallelism = 10, lock_timeout: LockTimeout = 0.0, refresh: Refresh = None,
        target: Targets = None,
    ) -> int:
        """Plan again on every save of the stack's files and crane.toml (with --apply: and apply); Ctrl-C stops."""
        from crane_iac.extras import require

        require("watchdog", "crane watch")
        from crane_iac.console import parse_vars
        from crane_iac.watch import WatchOptions
        from crane_iac.watch import watch as watch_stack

        return watch_stack(WatchOptions(chdir, stack, parse_vars(var or []), tuple(var_file or ()), apply_,
                                        options(refresh, target), debounce, parallelism, lock_timeout, _colour()))

    @app.command()
    def show(
        plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A plan saved with `crane plan --out`.")],
        as_json: AsJson = False, format_: Format = None,
    ) -> None:
        """Print a saved plan."""
        how = output_format(format_, as_json)
        saved = _read_plan(plan_file)
        if how == "text":
            print(f"Saved plan for stack {saved.stack!r}, made against state serial {saved.serial}"
                  f"{' (destroy)' if saved.destroy else ''}{'' if saved.refreshed else ', without refresh'}.\n")
        print(show_plan(saved, how), end="")

    @app.command()
    def refresh(stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
                lock_timeout: LockTimeout = 0.0) -> None:
        """Update state (resources and stack outputs) from the hypervisor without changing infrastructure."""
        ws = workspace(chdir, stack, var, var_file)
        report = ws.refresh(lock_timeout=lock_timeout)
        changed = report.outputs_changed
        print(f"Refreshed stack {ws.name!r}: {len(report.committed)} of {report.resources} records updated"
              + (f"; outputs changed: {', '.join(changed)}." if changed else "."))

    @app.command("import")
    def import_(
        address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The stack's address for it (vm.web).")],
        physical: Annotated[Optional[str], typer.Argument(  # noqa: UP045
            metavar="[NAME]", help="Its name on the hypervisor (a volume: POOL/NAME); default: the address's.")] = None,
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        lock_timeout: LockTimeout = 0.0,
    ) -> None:
        """Adopt an object that exists on the hypervisor into state, then show how it differs from the stack."""
        from crane_iac.render import render_plan

        report = workspace(chdir, stack, var, var_file).import_resource(address, physical, lock_timeout=lock_timeout)
        record = report.committed.record
        assert record is not None
        print(f"Imported {record.kind} {record.physical!r} as {address}.")
        print(render_plan(report.plan, colour=_colour()))

    @app.command()
    def output(
        name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="One output.")] = None,  # noqa: UP045
        stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False,
        ansible_inventory: Annotated[bool, typer.Option(
            "--ansible-inventory", help="An Ansible inventory (YAML) of the hosts the stack configures.")] = False,
    ) -> int:
        """Show the stack's outputs."""
        from crane_iac.errors import CraneError
        from crane_iac.render import value

        if ansible_inventory:
            import yaml

            found = workspace(chdir, stack).ansible_inventory()
            print(json.dumps(found, indent=2) if as_json else yaml.safe_dump(found, sort_keys=False), end="")
            return 0
        outputs = workspace(chdir, stack).outputs()
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
    def graph(stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path(".")) -> None:
        """Print the stack's dependency graph in DOT."""
        from crane_iac.planner.graph import to_dot

        print(to_dot(workspace(chdir, stack, var, var_file).load().dependencies()), end="")

    @app.command()
    def autoscale(
        stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
        once: Annotated[bool, typer.Option("--once", help="One period, then exit.")] = False,
        period: Annotated[float, typer.Option("--period", min=0.1, help="Seconds between periods.")] = 15.0,
        status: Annotated[bool, typer.Option("--status", help="The last decisions that changed a size.")] = False,
        metrics_port: Annotated[Optional[int], typer.Option(  # noqa: UP045
            "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port.")] = None,
        metrics_address: Annotated[str, typer.Option(
            "--metrics-address", help="Address the metrics are served on.")] = "127.0.0.1",
    ) -> int:
        """Resize the stack's autoscaled web tiers (AppDomain(autoscale=...)) from their servers' signal."""
        import signal
        import threading

        from crane_iac.autoscaler.controller import BY, Autoscaler

        ws = workspace(chdir, stack, var, var_file)
        if status:
            entries = [e for e in ws.history(limit=1000) if e.by == BY]
            for entry in entries[:20]:
                print(f"{entry.at}  serial {entry.serial}  {entry.address} = {(entry.after or {}).get('value')}  "
                      f"{entry.why}")
            if not entries:
                print("The autoscaler has not changed a size of this stack.")
            return 0
        stopping = threading.Event()
        if not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stopping.set())
        scaler = Autoscaler(ws, log=lambda line: print(line, flush=True))
        if metrics_port is not None:
            from crane_iac.extras import require

            require("prometheus_client", "crane autoscale --metrics-port")
            from crane_iac.autoscaler.exporter import Exporter

            scaler.exporter = Exporter()
            scaler.exporter.serve(metrics_port, metrics_address)
            print(f"metrics on http://{metrics_address}:{metrics_port}/metrics", flush=True)
        try:
            while True:
                try:
                    scaler.period()
                except Exception as exc:  # a period's failure is logged; the loop goes on (once: the CLI reports it)
                    if once:
                        raise
                    print(f"{type(exc).__name__}: {exc}", flush=True)
                if once or stopping.wait(period):
                    break
        finally:
            scaler.close()  # the agents' receivers
        if not once:
            print("autoscale: stopped", flush=True)
        return 0

    @app.command("force-unlock")
    def force_unlock(
        lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID", help="The ID the 'locked by' message printed.")],
        stack: Stack = None, chdir: Chdir = Path("."),
        force: Annotated[bool, typer.Option("--force", metavar="",
                                            help="Break it even though its holder runs on this host.")] = False,
    ) -> None:
        """Remove a stack's lock left by a run that is gone (recorded in the history)."""
        ws = workspace(chdir, stack)
        info = ws.break_lock(lock_id, force=force)
        print(f"Unlocked stack {ws.name!r}: broke lock {lock_id} held by {info.holder} ({info.operation} since "
              f"{info.acquired_at}); recorded in `crane state history`.")

    @state_app.command("list")
    def state_list(stack: Stack = None, chdir: Chdir = Path(".")) -> None:
        """List recorded resources."""
        for address in sorted(workspace(chdir, stack).state().resources):
            print(address)

    @state_app.command("show")
    def state_show(address: Annotated[str, typer.Argument(metavar="ADDRESS")], stack: Stack = None,
                   chdir: Chdir = Path(".")) -> None:
        """Show one recorded resource."""
        from crane_iac.errors import CraneError

        rec = workspace(chdir, stack).state().resources.get(address)
        if rec is None:
            raise CraneError(f"no resource {address!r} in state; see `crane state list`")
        print(json.dumps({"address": rec.address, "kind": rec.kind, "name": rec.physical, "endpoint": rec.endpoint,
                          "properties": rec.properties, "outputs": rec.outputs,
                          "dependencies": rec.dependencies, "protect": rec.protect}, indent=2, sort_keys=True))

    @state_app.command("history")
    def state_history(stack: Stack = None, chdir: Chdir = Path("."),
                      limit: Annotated[int, typer.Option("--limit", metavar="N", min=1)] = 100) -> None:
        """Show the journal of recorded changes, with the serial each made, grouped by the run that made them."""
        from itertools import groupby

        entries = workspace(chdir, stack).history(limit)
        for run, group in groupby(entries, key=lambda e: e.run):
            lines = list(group)
            indent = ""
            if run is not None:  # one header per run: an apply commits in batches, then its outputs
                first, last = lines[0].serial, lines[-1].serial
                serials = f"serial {first}" if first == last else f"serials {first}-{last}"
                print(f"run {run.id}  {run.operation}  by {run.by}  since {run.started_at}  {serials}")
                indent = "  "
            for entry in lines:
                who = f"  by {entry.by}" if entry.by else ""
                why = f": {entry.why}" if entry.why else ""
                print(f"{indent}{entry.at}  serial {entry.serial:<5} {entry.action:<8} {entry.address}{who}{why}")

    @state_app.command("rm")
    def state_rm(addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS...")], stack: Stack = None,
                 chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
        """Forget resources (and everything nested under them) without destroying them."""
        for address in workspace(chdir, stack).forget(addresses, lock_timeout=lock_timeout):
            print(f"Removed {address} from state; its object stays on the hypervisor and crane leaves it alone.")

    @state_app.command("mv")
    def state_mv(old: Annotated[str, typer.Argument(metavar="OLD")], new: Annotated[str, typer.Argument(metavar="NEW")],
                 stack: Stack = None, chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
        """Give a recorded resource a new address; its object keeps its name on the hypervisor."""
        workspace(chdir, stack).move(old, new, lock_timeout=lock_timeout)
        print(f"Moved {old} to {new}.")

    @state_app.command("migrate")
    def state_migrate(
        to: Annotated[str, typer.Option("--to", metavar="URL", help="The state store to copy every stack to.")],
        chdir: Chdir = Path("."),
    ) -> None:
        """Copy every stack's state to another backend (e.g. SQLite to PostgreSQL), without loss."""
        from crane_iac.config import find_project, load_project

        project = load_project(find_project(chdir.resolve()))
        ws = workspace(chdir, next(iter(project.config.stacks)))
        for line in ws.migrate_state(to).lines():
            print(line)

    @setting_app.command("list")
    def setting_list(stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
        """The stack's settings, with who set each and why."""
        found = workspace(chdir, stack).settings()
        if as_json:
            print(json.dumps({k: {"value": v.value, "by": v.by, "why": v.why, "at": v.at, "serial": v.serial}
                              for k, v in found.items()}, indent=2, sort_keys=True))
            return
        for key, item in sorted(found.items()):
            print(f"{key} = {json.dumps(item.value)}  (set by {item.by} at serial {item.serial}: {item.why})")

    Why = Annotated[str, typer.Option("--why", metavar="TEXT", help="Why (kept in the history).")]

    @setting_app.command("set")
    def setting_set(
        key: Annotated[str, typer.Argument(metavar="KEY")],
        value: Annotated[str, typer.Argument(metavar="VALUE", help="A JSON value (3, true, \"text\"), else text.")],
        why: Why, stack: Stack = None, chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0,
    ) -> None:
        """Set a durable setting; the next plan reads it."""
        from crane_iac.state.base import this_process

        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        ws = workspace(chdir, stack)
        serial = ws.set_setting(key, parsed, by=this_process(), why=why, lock_timeout=lock_timeout)
        print(f"Set {key} = {json.dumps(parsed)} for stack {ws.name!r} (serial {serial}); `crane plan` shows what "
              "it changes.")

    @setting_app.command("unset")
    def setting_unset(key: Annotated[str, typer.Argument(metavar="KEY")], why: Why, stack: Stack = None,
                      chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
        """Remove a setting: the stack's default applies again."""
        from crane_iac.errors import CraneError
        from crane_iac.state.base import this_process

        ws = workspace(chdir, stack)
        if key not in ws.settings():
            raise CraneError(f"stack {ws.name!r} has no setting {key!r}; see `crane setting list`")
        serial = ws.set_setting(key, None, by=this_process(), why=why, lock_timeout=lock_timeout)
        print(f"Unset {key} for stack {ws.name!r} (serial {serial}).")

    return app
