"""crane's TOML files (crane.toml, ``--var-file``) as text: reading one, where a key is written in it, and a
value's type in TOML's words, so that every problem names the file, the line and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from crane_iac.errors import ConfigError


def read_toml(path: Path, label: str) -> tuple[str, dict[str, Any]]:
    """The text and the table of a TOML file; an unreadable or malformed one is a ConfigError naming it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", dict: "a table",
             list: "an array"}
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


def key_line(text: str, keys: list[str]) -> int | None:
    """The line of crane.toml where the key at ``keys`` (``stacks.demo.fiel``) is written: ``fiel = ...`` under
    ``[stacks.demo]``, or a table's header; else the first line that mentions the innermost key naming one."""
    dotted = ".".join(keys)
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[([^\[\]]+)\]", line)
        if header:
            table = re.sub(r"[\s\"']", "", header.group(1))
            if table == dotted:
                return number
            continue
        assigned = re.match(r"^\s*([A-Za-z0-9_.\"'-]+?)\s*=", line)
        if assigned and ".".join(filter(None, (table, re.sub(r"[\s\"']", "", assigned.group(1))))) == dotted:
            return number
    for key in reversed(keys):
        found = line_of(text, key)
        if found:
            return found
    return None


def line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*(\[[^\]]*\b{re.escape(key)}\b[^\]]*\]|\"?{re.escape(key)}\"?\s*=)", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def var_line(text: str, stack: str, var: str) -> int | None:
    """The line of crane.toml declaring variable ``var`` of ``stack``: ``var = ...`` in ``[stacks.<stack>.vars]``,
    or ``vars.var = ...`` or ``vars = { var = ... }`` in ``[stacks.<stack>]``."""
    name = rf"(?:{re.escape(var)}|\"{re.escape(var)}\")\s*="
    in_vars = re.compile(rf"^\s*{name}")
    in_stack = re.compile(rf"^\s*vars\s*(?:\.\s*|=\s*\{{(?:.*[,{{])?\s*){name}")
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[([^\[\]]+)\]", line)
        if header:
            table = re.sub(r"[\s\"']", "", header.group(1))
        elif (table == f"stacks.{stack}.vars" and in_vars.match(line)) or (
                table == f"stacks.{stack}" and in_stack.match(line)):
            return number
    return None
