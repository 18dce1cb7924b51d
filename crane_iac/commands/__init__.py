"""The ``crane`` command's commands, as module-level functions of one typer app (crane_iac.cli is the entry point,
which imports this package only when a command runs: ``crane --version`` stays fast)."""

# isort: skip_file
# each module registers its commands on the app, in the order `crane --help` lists them
from crane_iac.commands import run
from crane_iac.commands import records
from crane_iac.commands import autoscale
from crane_iac.commands import ipam
from crane_iac.commands import xen
from crane_iac.commands import template
from crane_iac.commands import job
from contextlib import ExitStack
from typing import Any

from crane_iac.commands.base import _opened, app

__all__ = ["app", "autoscale", "invoke", "ipam", "job", "records", "run", "template", "xen"]


def invoke(opened: ExitStack) -> Any:
    """Run the command the arguments name; what it opens is closed by ``opened``."""
    _opened.append(opened)
    try:
        return app(standalone_mode=False)
    finally:
        _opened.pop()
