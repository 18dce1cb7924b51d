"""The commands that plan and change a stack: validate, plan, apply, destroy, watch, show, refresh, import, graph."""

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from crane_iac.commands.base import (
    AsJson,
    AutoApprove,
    Chdir,
    Format,
    LockTimeout,
    Parallelism,
    Refresh,
    Replaces,
    Stack,
    Targets,
    VarFiles,
    Vars,
    _colour,
    _interruptible,
    _read_plan,
    app,
    options,
    output_format,
    show_plan,
    workspace,
)

if TYPE_CHECKING:
    from crane_iac.engine.workspace import PlanOptions, Workspace
    from crane_iac.planner.model import Plan


@app.command()
def validate(stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path(".")) -> None:
    """Check a stack without contacting a hypervisor."""
    ws = workspace(chdir, stack, var, var_file)
    loaded = ws.load()
    print(f"Stack {ws.name!r} is valid: {len(loaded.desired)} resources.")



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
def graph(stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path(".")) -> None:
    """Print the stack's dependency graph in DOT."""
    from crane_iac.planner.graph import to_dot

    print(to_dot(workspace(chdir, stack, var, var_file).load().dependencies()), end="")

