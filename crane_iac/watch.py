"""`crane watch`: plan a stack again on every save of its files and crane.toml (with ``apply``: and apply it).

A client of the workspace, like the CLI: each round opens the workspace afresh (crane.toml may have changed),
plans or applies, and prints the plan, or the diagnostics and waits for the next save. File events come from a
watchdog observer; a burst of them within ``debounce`` seconds of each other makes one round.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

import crane_iac
from crane_iac.config import find_project
from crane_iac.console import apply_verdict, diagnostic_lines, failure_lines, interrupted_line, stopping_on_signals
from crane_iac.engine.workspace import PlanOptions, Workspace
from crane_iac.errors import CraneError, DiagnosticsError, LockHeldError
from crane_iac.render import Progress, render_plan

#: seconds between tries while another run holds the stack's lock (and no save came meanwhile)
LOCK_RETRY = 3.0
#: how often the loop looks whether a signal asked it to stop
_TICK = 0.1
#: saves, not reads: an opened or closed file (the stack run reading its own file) is no change
_SAVES: list[type[FileSystemEvent]] = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent]
_CRANE_PACKAGE = Path(crane_iac.__file__).resolve().parent


@dataclass(frozen=True)
class WatchOptions:
    """What `crane watch` was asked for: the stack as for `crane plan`, and whether to apply each plan."""

    directory: Path
    stack: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    var_files: tuple[Path, ...] = ()
    apply: bool = False
    plan: PlanOptions = field(default_factory=PlanOptions)
    debounce: float = 0.3
    parallelism: int = 10
    lock_timeout: float = 0.0
    colour: bool = False


@dataclass(frozen=True)
class WatchedFiles:
    """What a round's plan depends on: crane.toml, the var files, and the .py files in the stack's directory and
    below (a stack may import helpers beside it): only its top level when it is the project's directory (or
    above it), whose .venv is no part of the stack; hidden directories and __pycache__ never are."""

    config: Path
    var_files: frozenset[Path] = frozenset()
    stack_dir: Path | None = None
    recursive: bool = True

    def matches(self, path: Path) -> bool:
        if path == self.config or path in self.var_files:
            return True
        if self.stack_dir is None or path.suffix != ".py":
            return False
        try:
            parts = path.relative_to(self.stack_dir).parts
        except ValueError:
            return False
        if not self.recursive and len(parts) != 1:
            return False
        return not any(p.startswith(".") or p == "__pycache__" for p in parts)

    def directories(self) -> dict[Path, bool]:
        """Each directory to watch, and whether with its subdirectories."""
        found = {self.config.parent: False, **{f.parent: False for f in self.var_files}}
        if self.stack_dir is not None:
            found[self.stack_dir] = found.get(self.stack_dir, False) or self.recursive
        return {d: deep for d, deep in found.items() if d.is_dir()}

    def describe(self, root: Path) -> str:
        shown = [_relative(self.config, root), *sorted(_relative(f, root) for f in self.var_files)]
        if self.stack_dir is not None:
            where = _relative(self.stack_dir, root)
            shown.append(("" if where == "." else where + "/") + ("**/*.py" if self.recursive else "*.py"))
        return ", ".join(shown)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class _Saves(FileSystemEventHandler):
    """Collects the watched paths saved since the last round (from the observer's thread) and wakes the loop."""

    def __init__(self, watched: WatchedFiles) -> None:
        self.watched = watched
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._paths: set[Path] = set()
        self.last = 0.0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not isinstance(event, tuple(_SAVES)):
            return
        paths = [Path(os.fsdecode(p)) for p in (event.src_path, event.dest_path) if p]
        hits = [p for p in paths if self.watched.matches(p)]
        if hits:
            with self._lock:
                self._paths.update(hits)
                self.last = time.monotonic()
            self.wake.set()

    def take(self) -> set[Path]:
        with self._lock:
            paths, self._paths = self._paths, set()
            self.wake.clear()
            return paths


class Watcher:
    """The loop: a round at start, then one per burst of saves, until a signal stops it."""

    def __init__(self, options: WatchOptions, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.options = options
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.config = find_project(options.directory.resolve())
        self.root = self.config.parent
        self.var_files = tuple(f.resolve() for f in options.var_files)
        self.watched = WatchedFiles(self.config, frozenset(self.var_files))
        self.saves = _Saves(self.watched)
        self.stop = threading.Event()  # set by a signal: only read here, never waited on (see _signals)
        self.signals: list[int] = []
        self.busy = False  # a round is running
        self.lock_held = False  # the last round found the stack locked: try again without waiting for a save
        self.interrupted = False  # an apply was stopped by a signal
        self.observer: BaseObserver = Observer()
        self._scheduled: dict[Path, bool] | None = None

    def run(self) -> int:
        """Watch until SIGINT or SIGTERM: 0, or 128 + the signal when it interrupted an apply."""
        with self._signals():
            try:
                self._schedule()
                self.observer.start()
                self._round("start")
                while not self.stop.is_set():
                    paths = self._next_burst()
                    if self.stop.is_set():
                        break
                    changed = ", ".join(sorted(_relative(p, self.root) for p in paths))
                    self._round(f"{changed} changed" if changed else "the lock was held; trying again")
            finally:
                self.observer.stop()
                if self.observer.is_alive():
                    self.observer.join(timeout=5)
        name = signal.Signals(self.signals[0]).name if self.signals else "stop"
        self._say(f"{name}: stopped watching.")
        return 128 + self.signals[0] if self.interrupted and self.signals else 0

    # the loop

    def _next_burst(self) -> set[Path]:
        """Wait for a save, then until ``debounce`` seconds pass without another; the saved paths. After a held
        lock, an empty set once LOCK_RETRY seconds pass without a save."""
        retry_at = time.monotonic() + LOCK_RETRY if self.lock_held else None
        while not self.saves.wake.wait(_TICK):
            if self.stop.is_set() or (retry_at is not None and time.monotonic() >= retry_at):
                return set()
        while not self.stop.is_set():
            quiet = self.saves.last + self.options.debounce - time.monotonic()
            if quiet <= 0:
                break
            time.sleep(min(quiet, _TICK))
        return self.saves.take()

    def _round(self, why: str) -> None:
        verb = "planning and applying" if self.options.apply else "planning"
        self._say(f"[{time.strftime('%H:%M:%S')}] {why}: {verb}.")
        self.lock_held = False
        self.busy = True
        try:
            self._forget_stack_modules()
            with Workspace.open(self.options.directory, self.options.stack, variables=self.options.variables,
                                var_files=self.var_files) as ws:
                self._follow(ws)
                if self.options.apply:
                    self._apply(ws)
                else:
                    self._say(render_plan(ws.plan(self.options.plan), colour=self.options.colour))
        except DiagnosticsError as exc:
            for line in diagnostic_lines(exc):
                self._error(line)
        except LockHeldError as exc:
            self.lock_held = True
            self._error(f"error: {exc}")
            self._error(f"Trying again in {LOCK_RETRY:g}s, or at the next save.")
        except CraneError as exc:
            self._error(f"error: {exc}")
        finally:
            self.busy = False
        if not self.stop.is_set():
            self._say("Waiting for the next save.")

    def _apply(self, ws: Workspace) -> None:
        """Plan and apply under the stack's lock, as `crane apply --auto-approve` does."""
        wanted = self.options.plan
        with ws.locked("apply", lock_timeout=self.options.lock_timeout, read=wanted.refresh) as run:
            plan = run.plan(wanted)
            self._say(render_plan(plan, colour=self.options.colour))
            if not plan.has_changes or self.stop.is_set():
                return
            started = time.monotonic()
            progress = Progress(self.out, live=self.options.colour)
            try:
                result = run.apply(plan, parallelism=self.options.parallelism, report=progress.report,
                                   stop=self.stop)
            finally:
                progress.finish()
        self._say(apply_verdict(result, time.monotonic() - started))
        for line in failure_lines(result):
            self._error(line)
        if result.interrupted:
            self.interrupted = True
            self._error(interrupted_line(result, "Run `crane apply` to finish."))

    def _follow(self, ws: Workspace) -> None:
        """Watch what this round's stack reads (crane.toml may name another file since the last round), from
        before the stack runs: a save while it runs is the next round's."""
        stack_dir = (ws.project.root / ws.config.file).resolve().parent
        inside = stack_dir != self.root and stack_dir.is_relative_to(self.root)  # never the project's .venv, .git
        watched = WatchedFiles(self.config, frozenset(self.var_files), stack_dir, recursive=inside)
        if watched != self.watched:
            self.watched = self.saves.watched = watched
            self._schedule()
            self._say(f"Watching {watched.describe(self.root)} for stack {ws.name!r} (Ctrl-C stops).")

    def _schedule(self) -> None:
        wanted = self.watched.directories()
        if self._scheduled == wanted:
            return
        self.observer.unschedule_all()
        for directory, deep in wanted.items():
            try:
                self.observer.schedule(self.saves, str(directory), recursive=deep, event_filter=_SAVES)
            except OSError as exc:
                raise CraneError(f"cannot watch {directory}: {exc.strerror or exc} (too many files to watch? see "
                                 "/proc/sys/fs/inotify/max_user_watches)") from None
        self._scheduled = wanted

    def _forget_stack_modules(self) -> None:
        """Helpers the stack imported from its directory are imported afresh: an edited one is a change too."""
        for name, module in list(sys.modules.items()):
            source = getattr(module, "__file__", None)
            if source is None:
                continue
            path = Path(source).resolve()
            if self.watched.matches(path) and not path.is_relative_to(_CRANE_PACKAGE):
                del sys.modules[name]

    # output and signals

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _error(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """The first SIGINT/SIGTERM stops the loop (an apply starts nothing new and records what is in flight);
        a second during a round exits at once. Idle, the loop ends within a tick anyway, so nothing is said (a
        signal may come twice, sent to the group too)."""
        with stopping_on_signals(
                self.stop, self.err,
                first=lambda name: (f"\n{name}: stopping after this round (an apply finishes and records what is in "
                                    "flight). Press Ctrl-C again to exit at once.\n") if self.busy else None,
                again=lambda name: f"\n{name} again: exiting at once.\n" if self.busy else None) as seen:
            self.signals = seen
            yield


def watch(options: WatchOptions) -> int:
    """`crane watch`: the exit code once a signal stopped it."""
    return Watcher(options).run()
