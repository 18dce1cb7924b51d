"""The ``crane`` command's entry point: ``--version`` at once, then the command (crane_iac.commands, the only
modules that wire config, loader, state, provider and engine together), and every error a user can cause printed as
a message, never a traceback."""

import atexit
import gc
import sys
from contextlib import ExitStack

from crane_iac import __version__


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):  # fast path: no heavy imports
        print(f"crane {__version__}")
        return
    # a run allocates an object or more per field of each resource it loads, reads and records (10,000 resources:
    # millions), and next to none of them in cycles: at Python's default the collector ran ~600 times, 4 of them over
    # everything held, 0.45 s of a 10,000-resource plan; at these thresholds it runs a few times, 0.1 s. The
    # interpreter's collections as it exits (0.1–0.25 s after such a plan) would only free memory the ending process
    # gives back anyway: what is left at exit is frozen, out of their reach
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    atexit.unregister(gc.freeze)  # registered once however often main() runs in one process (tests)
    atexit.register(gc.freeze)
    from crane_iac import early

    early.open_early(sys.argv[1:])  # a read-only command's sandbox starts opening now, beside the imports below
    try:
        _run()
    finally:
        early.discard()
        gc.set_threshold(*threshold)


def _run() -> None:
    import typer

    from crane_iac.errors import CraneError, DiagnosticsError

    try:
        with ExitStack() as opened:  # every workspace a command opens is closed (its store's connections)
            from crane_iac.commands import invoke

            code = invoke(opened)
    except DiagnosticsError as exc:
        from crane_iac.console import diagnostic_lines

        for line in diagnostic_lines(exc):
            print(line, file=sys.stderr)
        sys.exit(1)
    except CraneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Abort:
        print("Aborted; nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error from the command-line parser
            exc.show()
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
