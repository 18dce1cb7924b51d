"""Errors a user can cause, and the diagnostics that report them.

Every error meant for a user is a ``CraneError``; the CLI prints its message and
exits non-zero, never a traceback::

    CraneError
    ├── DiagnosticsError     one or more problems in a stack or config, all reported at once
    ├── ConfigError          crane.toml is missing or invalid
    ├── StateError           the state store cannot be opened or is newer than this crane
    │   ├── LockHeldError    another run holds the stack's lock
    │   ├── StalePlanError   a saved plan no longer matches the state or the stack
    │   ├── StaleStateError  the stack's serial moved since this run read it (another writer won); nothing written
    │   └── FencedError      a leader's write whose lease another run has taken since; nothing written
    └── ProviderError        the hypervisor refused a call or cannot be reached
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a stack: where it is, which resource, and what is wrong."""

    summary: str
    file: str | None = None
    line: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else (self.file or "")
        parts = [p for p in (where, self.address) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.summary}" if prefix else self.summary


class CraneError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


class DiagnosticsError(CraneError):
    """Several diagnostics gathered in one run."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(f"error: {d}" for d in diagnostics))


class ConfigError(CraneError):
    """crane.toml is missing, malformed or names something that does not exist."""


class SettingError(ConfigError):
    """An endpoint's key in crane.toml whose value proves unusable only when the endpoint is opened (a password's
    environment variable that is not set): ``key`` names it, and opening the endpoints adds ``endpoint``, so that
    the error names crane.toml's line (engine/workspace.py)."""

    def __init__(self, key: str, message: str, endpoint: str | None = None) -> None:
        self.key, self.message, self.endpoint = key, message, endpoint
        super().__init__(f"{key}: {message}")


class StateError(CraneError):
    """The state store cannot be used."""


class LockHeldError(StateError):
    """Another crane run holds the lock of this stack."""


class StalePlanError(StateError):
    """A saved plan was made against other state or another stack."""


class StaleStateError(StateError):
    """A write expected the stack at one serial and found another: a concurrent writer got there first, so
    nothing was written (optimistic concurrency; read the state again and retry)."""


class FencedError(StateError):
    """A replicated loop's write carried the fencing token of a lease another run has taken since (the writer was
    deposed: it stalled, or lost the database, longer than its lease): nothing was written."""


class ProviderError(CraneError):
    """The hypervisor refused a call or could not be reached."""
