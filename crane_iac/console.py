"""What the ``crane`` command and ``crane watch`` both say and how both stop, written once: ``--var`` items, a
stack's diagnostics, an apply's verdict and summary, and the SIGINT/SIGTERM handling of a run that is applying."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from crane_iac.errors import ConfigError, DiagnosticsError

if TYPE_CHECKING:  # parsing --var comes before a plan opens its endpoints: the engine and renderer come after
    from crane_iac.engine.apply import ApplyResult


def parse_vars(given: Sequence[str]) -> dict[str, str]:
    """``--var name=value`` items as a mapping; an item without ``=`` is a ConfigError saying how."""
    variables: dict[str, str] = {}
    for item in given:
        key, sep, val = item.partition("=")
        if not sep:
            raise ConfigError(f"--var {item!r}: use --var name=value")
        variables[key.strip()] = val
    return variables


def diagnostic_lines(exc: DiagnosticsError) -> list[str]:
    """Every problem of a stack or config on a line of its own, then the count and that nothing changed."""
    return [*(f"error: {d}" for d in exc.diagnostics), f"{len(exc.diagnostics)} error(s); nothing was changed."]


def apply_verdict(result: ApplyResult, elapsed: float, rows_written: int | None = None) -> str:
    """``Apply complete: 2 created in 1.2s`` (or INTERRUPTED or FAILED, with the failed and skipped counts)."""
    from crane_iac.render import render_result

    verdict = "complete" if result.ok else "INTERRUPTED" if result.interrupted else "FAILED"
    failures = f", {len(result.failed)} failed, {len(result.skipped)} skipped" \
        if result.failed or result.skipped else ""
    rows = f" ({rows_written} state rows written)" if rows_written is not None else ""
    done = render_result(result.counts())
    if result.released:
        given = f"{result.released} lease{'s' if result.released != 1 else ''} given back"
        done = given if not result.counts() else f"{done}, {given}"
    return f"Apply {verdict}: {done}{failures} in {elapsed:.1f}s{rows}."


def failure_lines(result: ApplyResult) -> list[str]:
    """Each step that failed, with the provider's words."""
    return [f"error: {event.address}: {event.detail}" for event in result.failed]


def interrupted_line(result: ApplyResult, finish: str) -> str:
    """What an interrupted apply left: what finished is recorded, what was not started, and how to finish."""
    shown = ", ".join(result.not_started[:5]) + (" …" if len(result.not_started) > 5 else "")
    started = f" ({shown})" if shown else ""
    return (f"Interrupted: what finished is recorded; {len(result.not_started)} resource(s) were not "
            f"started{started}. {finish}")


def write_raw(stream: TextIO, text: str) -> None:
    """Write from a signal handler: straight to the descriptor (print() may hold the stream's lock already when
    the signal arrives); a stream with no descriptor (captured output) gets nothing."""
    try:
        os.write(stream.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def stopping_on_signals(stop: threading.Event, err: TextIO, *, first: Callable[[str], str | None],
                        again: Callable[[str], str | None], restore_after_signal: bool = True) -> Iterator[list[int]]:
    """While the block runs, the first SIGINT/SIGTERM sets ``stop`` (an apply starts nothing new, and finishes and
    records what is in flight) and writes what ``first(signal name)`` says, if anything; a later one writes what
    ``again(name)`` says and, when it says something, exits at once (crash safety takes over). The handler only
    sets the event and writes to the raw descriptor. Yields the signals seen. With ``restore_after_signal`` False,
    a run that was signalled keeps the handler (it is winding down: a second signal must still exit at once)."""
    seen: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        seen.append(signum)
        name = signal.Signals(signum).name
        if len(seen) == 1:
            stop.set()
            text = first(name)
            if text:
                write_raw(err, text)
            return
        text = again(name)
        if text is not None:
            write_raw(err, text)
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        if restore_after_signal or not seen:
            for sig, old in previous.items():
                signal.signal(sig, old)
