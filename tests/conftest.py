"""Shared fixtures: a throwaway crane project on the sandbox hypervisor, and the real `crane` command."""

from __future__ import annotations

import contextlib
import io
import os
import random
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from crane_iac.cli import main
from tests.state.postgresql_server import PostgresFailed, PostgresServer, PostgresUnavailable

REPO = Path(__file__).resolve().parent.parent
CRANE = [sys.executable, "-m", "crane_iac"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class ProjectDir:
    root: Path

    def write_stack(self, body: str, name: str = "main.py") -> Path:
        path = self.root / "stacks" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(body))
        return path

    def write_config(self, body: str) -> None:
        (self.root / "crane.toml").write_text(textwrap.dedent(body))

    def crane(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
              process: bool = False) -> Result:
        """Run ``crane ARGS`` in this project: in this process (the CLI's own entry point, with its output and exit
        code captured), or with ``process`` or ``env`` as a real child process (exit codes on signals, failpoints
        that kill the process, an interpreter's start-up)."""
        if not process and env is None:
            return self._in_process(args)
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        full_env.pop("CRANE_FAILPOINT", None) if "CRANE_FAILPOINT" not in (env or {}) else None
        proc = subprocess.run([*CRANE, *args], cwd=self.root, capture_output=True, text=True, env=full_env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def _in_process(self, args: tuple[str, ...]) -> Result:
        out, err = io.StringIO(), io.StringIO()
        saved = os.getcwd(), sys.argv, sys.stdin, os.environ.get("CRANE_FAILPOINT")
        os.environ.pop("CRANE_FAILPOINT", None)
        os.chdir(self.root)
        sys.argv, sys.stdin = ["crane", *args], io.StringIO("")
        code: int = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        finally:
            os.chdir(saved[0])
            sys.argv, sys.stdin = saved[1], saved[2]
            if saved[3] is not None:
                os.environ["CRANE_FAILPOINT"] = saved[3]
        return Result(code, out.getvalue(), err.getvalue())

    def sandbox(self) -> libvirt.virConnect:
        """A read-only look at the sandbox, as a separate libvirt-python client would see it."""
        return libvirt.open(f"test://{self.root / '.crane' / 'sandbox.xml'}")

    def networks(self) -> list[str]:
        conn = self.sandbox()
        try:
            return sorted(n.name() for n in conn.listAllNetworks(0))
        finally:
            conn.close()

    def domains(self) -> list[str]:
        conn = self.sandbox()
        try:
            return sorted(d.name() for d in conn.listAllDomains(0))
        finally:
            conn.close()

    def snapshot(self) -> dict[str, bytes]:
        """Every file crane keeps under .crane/, to prove a run touched nothing: the state database by its
        content (a run that takes and releases the stack lock may leave SQLite's free space differently)."""
        found = {}
        for path in sorted((self.root / ".crane").glob("*")):
            if path.suffix in (".lock",) or path.name.endswith(("-wal", "-shm")):
                continue
            if path.suffix == ".db":
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    found[path.name] = "\n".join(db.iterdump()).encode()
                finally:
                    db.close()
            else:
                found[path.name] = path.read_bytes()
        return found


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    proj = ProjectDir(tmp_path)
    proj.write_config("""
        [stacks.main]
        file = "stacks/main.py"
    """)
    return proj


def ok(project: ProjectDir, *args: str) -> str:
    """``crane ARGS`` in the project, which must succeed: its output."""
    result = project.crane(*args)
    assert result.code == 0, result.out + result.err
    return result.out


def assert_clean_error(result: Result, *needles: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server started for this test session (initdb in a temp dir, a Unix socket there, no TCP),
    stopped and removed at the end. Where the server cannot be had, under CI or as root, that is a failure with
    the reason or the server's log; a developer without the binaries (not root) gets a skip."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true" or os.geteuid() == 0:
            pytest.fail(f"PostgreSQL is needed for the state tests: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        with server:
            yield server
    except PostgresFailed as exc:
        pytest.fail(f"the test PostgreSQL server failed: {exc}", pytrace=False)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing is bound to, below the kernel's ephemeral range (32768 and up): a port the kernel
    hands out for a bind to port 0 is in that range, and may be taken as the local port of an outgoing connection
    (a health check, a client) before the process meant to listen on it has started. A port is handed out once per
    test run, so two processes started one after the other (neither listening yet) never get the same one."""
    for _ in range(200):
        port = random.randint(10_000, 32_000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free loopback port between 10000 and 32000")
