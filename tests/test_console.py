"""The pieces the command line and `crane watch` share: --var items, diagnostics, and the stop-signal handler,
which writes to the raw descriptor and never through the stream (print() may hold the stream's lock already)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from crane_iac.console import diagnostic_lines, parse_vars, stopping_on_signals
from crane_iac.errors import ConfigError, Diagnostic, DiagnosticsError


def test_var_items_and_a_missing_equals_sign() -> None:
    assert parse_vars(["web=4", " size =a=b"]) == {"web": "4", "size": "a=b"}
    with pytest.raises(ConfigError, match="--var 'web': use --var name=value"):
        parse_vars(["web"])


def test_diagnostics_are_listed_then_counted() -> None:
    lines = diagnostic_lines(DiagnosticsError([Diagnostic("bad", "s.py", 3, "vm.a"), Diagnostic("worse")]))
    assert lines == ["error: s.py:3: vm.a: bad", "error: worse", "2 error(s); nothing was changed."]


class _Unprintable:
    """A stream whose Python-level writes fail the test: the handler must use its descriptor only."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def write(self, _text: str) -> int:
        raise AssertionError("the signal handler wrote through the stream")


def test_the_first_signal_sets_stop_and_writes_to_the_descriptor_only() -> None:
    read_end, write_end = os.pipe()
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    try:
        with stopping_on_signals(stop, _Unprintable(write_end), first=lambda name: f"{name}: stopping\n",  # type: ignore[arg-type]
                                 again=lambda name: None) as seen:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(5)
            os.kill(os.getpid(), signal.SIGTERM)  # `again` says nothing: no exit
        assert seen == [signal.SIGTERM, signal.SIGTERM]
        assert os.read(read_end, 100) == b"SIGTERM: stopping\n"
        assert signal.getsignal(signal.SIGTERM) is before  # restored
    finally:
        os.close(read_end)
        os.close(write_end)
