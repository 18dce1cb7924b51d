"""What every command shares: the app and its sub-apps, the options they take, and how a command opens a workspace
(closed when the command ends) and prints a plan."""

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from crane_iac import __version__

if TYPE_CHECKING:
    import threading

    from crane_iac.engine.workspace import PlanOptions, Workspace
    from crane_iac.planner.model import Plan


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="crane: declarative infrastructure as code for libvirt and XenServer.")
state_app = typer.Typer(help="Inspect and edit recorded state.", no_args_is_help=True)
app.add_typer(state_app, name="state")
setting_app = typer.Typer(help="Durable settings a stack reads with setting(KEY, default).", no_args_is_help=True)
app.add_typer(setting_app, name="setting")

#: what the running command opened (workspaces and their stores), closed when it ends: set by ``run``
_opened: list[ExitStack] = []

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
    _opened[-1].callback(ws.close)
    return ws



@app.callback(invoke_without_command=True)
def root(version: Annotated[bool, typer.Option("--version", "-V", metavar="", help="Print the version.")] = False,
         ) -> None:
    if version:
        print(f"crane {__version__}")
        raise typer.Exit(0)



def options(refresh: str | None = None, target: list[str] | None = None, replace: list[str] | None = None,
            destroy: bool = False) -> "PlanOptions":
    from crane_iac.engine.workspace import PlanOptions

    return PlanOptions(truth(refresh), tuple(target or ()), tuple(replace or ()), destroy)



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



Why = Annotated[str, typer.Option("--why", metavar="TEXT", help="Why (kept in the history).")]
