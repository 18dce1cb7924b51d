"""A throwaway PostgreSQL server: Debian's binaries, a fresh cluster in a temp directory, a Unix socket there and
no TCP; stopped and removed whatever happens. The tests' ``postgresql_server`` fixture and bench/state_backends.py
use it.

initdb and postgres refuse to run as root: as root they run as the ``postgres`` user Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from tests.waiting import wait_until

INSTALL_HINT = "install Debian's postgresql package (scripts/install.sh does)"


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries here (or no user to run them as)."""


class PostgresFailed(Exception):
    """The server would not start or answer; the message carries its log."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
             if (Path(p).parent / "postgres").exists()]
    if not found:
        raise PostgresUnavailable(f"no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; {INSTALL_HINT}")
    return max(found, key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])


class PostgresServer:
    """``with PostgresServer() as server:`` a running server; ``server.create_database()`` a fresh database URL."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(f"running as root, and there is no 'postgres' user to run PostgreSQL as; "
                                          f"{INSTALL_HINT}") from None
        self.dir = Path(tempfile.mkdtemp(prefix="crane-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self, *argv: str) -> list[str]:
        if not self.as_root:
            return list(argv)
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--init-groups",
                "--", *argv]

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def start(self) -> None:
        if self.as_root:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.dir.chmod(0o755)
        with open(self.log, "wb") as log:
            if self.as_root:
                os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
            initdb = subprocess.run(self._command(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                                  "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, timeout=120)
            if initdb.returncode != 0:
                raise PostgresFailed(f"initdb failed ({initdb.returncode}):\n{self.log_text()}")
            self.proc = subprocess.Popen(
                self._command(str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.dir),
                              "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                              "-c", "full_page_writes=off", "-c", "max_connections=200"),
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        self._wait_ready(30)

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bindir / "psql"), "-h", str(self.dir), "-U", "postgres", "-d", database,
                               "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True, timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        proc = self.proc
        assert proc is not None

        def answers() -> bool:
            if proc.poll() is not None:
                raise PostgresFailed(f"postgres exited ({proc.returncode}) before answering:\n{self.log_text()}")
            return self._psql("SELECT 1").returncode == 0

        try:
            wait_until(answers, timeout, "postgres answering", every=0.1)
        except AssertionError as exc:
            raise PostgresFailed(f"{exc}:\n{self.log_text()}") from None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.dir}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"crane_{uuid.uuid4().hex[:12]}"
        done = self._psql(f"CREATE DATABASE {name}")
        if done.returncode != 0:
            raise PostgresFailed(f"CREATE DATABASE failed: {done.stderr}\n{self.log_text()}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and remove its directory, whatever state it is in."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(30)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
