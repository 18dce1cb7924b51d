"""What a command will connect to, guessed before it is parsed, so that the slow open starts at once.

``crane plan`` on the sandbox spends most of its time in libvirt opening the node file; the command's own start
(typer, pydantic, crane.toml's models, the workspace) would otherwise come before it. ``open_early`` reads the
arguments and crane.toml with nothing but the standard library and, when the command is ``plan`` and its stack's
default endpoint is an existing sandbox, starts that open (crane_iac.providers.libvirt.early). It never decides
anything: the command parses and validates everything as always, and the sandbox host takes the early connection
only when it is the very URI it opens. Anything unexpected (an option it does not know, a crane.toml it cannot
read, several stacks and no choice) means no guess.

Mirrors config.py's ``Project.stack`` and ``StackConfig.endpoints`` and engine/endpoints.py's ``sandbox_dir``;
tests/test_early_open.py checks that a plan takes what this opened.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

#: commands that open the default endpoint without changing it, and so without the sandbox's lock
READ_ONLY = {"plan"}
#: options of those commands that take a value (the rest are flags)
_VALUED = {"--stack", "-s", "--chdir", "-C", "--var", "--var-file", "--out", "-o", "--lock-timeout", "--target",
           "--parallelism", "--format"}


def guess_sandbox(args: list[str]) -> Path | None:
    """The node file ``crane ARGS`` will open first, or None when that is not clear from the arguments alone."""
    if not args or args[0] not in READ_ONLY:
        return None
    chdir, stack = Path.cwd(), os.environ.get("CRANE_STACK") or None
    rest = iter(args[1:])
    for arg in rest:
        option, equals, value = arg.partition("=")
        if not option.startswith("-"):
            continue
        if option in _VALUED and not equals:
            value = next(rest, "")
        if option in ("--stack", "-s"):
            stack = value
        elif option in ("--chdir", "-C"):
            chdir = Path(value)
    try:
        root = _project_root(chdir.resolve())
        if root is None:
            return None
        data = tomllib.loads((root / "crane.toml").read_text())
        stacks = data.get("stacks")
        if not isinstance(stacks, dict) or not stacks:
            return None
        if stack is None:
            stack = data.get("default_stack") or (next(iter(stacks)) if len(stacks) == 1 else None)
        config = stacks.get(stack) if isinstance(stack, str) else None
        if not isinstance(config, dict):
            return None
        providers = config.get("providers")
        endpoint = providers.get("default") if isinstance(providers, dict) else None
        endpoint = endpoint if isinstance(endpoint, dict) else config
        if endpoint.get("uri") is not None or endpoint.get("provider", endpoint.get("type", "libvirt")) != "libvirt":
            return None
        node_file = root / ".crane" / "sandbox.xml"
        return node_file if node_file.is_file() else None
    except (OSError, ValueError):  # tomllib's errors are ValueErrors: the command reports them properly
        return None


def _project_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "crane.toml").is_file():
            return directory
    return None


def open_early(args: list[str]) -> None:
    """Start opening the sandbox ``crane ARGS`` will read, if it is clear which."""
    node_file = guess_sandbox(args)
    if node_file is not None:
        from crane_iac.providers.libvirt.early import start

        start(f"test://{node_file}")


def discard() -> None:
    """Close an early connection the command did not take."""
    import sys

    early = sys.modules.get("crane_iac.providers.libvirt.early")
    if early is not None:
        early.discard()
