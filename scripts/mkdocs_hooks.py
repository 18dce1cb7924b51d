"""MkDocs hook: the command reference is rendered from the `crane` command itself when the site is built.

docs/reference/cli.md holds the marker ``<!-- crane-cli-reference -->``; this hook replaces it with every command
and sub-command of the typer app in crane_iac/commands/ (its help, usage, arguments and options), so the page cannot
drift from ``crane COMMAND --help``. typer vendors its own copy of click (``typer._click``), whose command
classes are not click's, so mkdocs-click cannot read it; this walks typer's commands by their click-style interface.
"""

from __future__ import annotations

from typing import Any

import typer

from crane_iac.commands import app

MARKER = "<!-- crane-cli-reference -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


def render() -> str:
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="crane")
    return "\n".join(_commands(group, root))


def _commands(group: Any, ctx: typer.Context) -> list[str]:
    out: list[str] = []
    if not hasattr(group, "list_commands"):
        return out
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = typer.Context(command, info_name=name, parent=ctx)
        if hasattr(command, "list_commands"):
            out += _commands(command, sub)
        else:
            out += _command(command, sub)
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(command: Any, ctx: typer.Context) -> list[str]:
    path = ctx.command_path
    lines = [f"### `{path}`", "", "```", f"{path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    arguments = [p for p in command.get_params(ctx) if p.param_type_name == "argument"]
    options = [p for p in command.get_params(ctx) if p.param_type_name == "option" and not p.hidden]
    if arguments:
        lines += ["| argument | |", "|---|---|"]
        for a in arguments:
            required = "required" if a.required else "optional"
            text = _cell(getattr(a, "help", None) or "")
            lines.append(f"| `{_cell(a.metavar or a.name.upper())}` | {text} ({required}) |")
        lines.append("")
    if options:
        lines += ["| option | | default |", "|---|---|---|"]
        for o in options:
            names = ", ".join(f"`{n}`" for n in (*o.opts, *o.secondary_opts))
            shown = o.metavar if o.metavar is not None else o.display_type(ctx)
            metavar = f" `{_cell(shown)}`" if shown and not getattr(o, "is_flag", False) else ""
            unset = o.default is None or o.default is False or o.default in ((), []) or callable(o.default)
            default = "" if unset else o.default
            lines.append(f"| {names}{metavar} | {_cell(o.help or '')} | {_cell(str(default))} |")
        lines.append("")
    return lines
