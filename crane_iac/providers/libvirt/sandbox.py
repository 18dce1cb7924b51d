"""The embedded default hypervisor: libvirt's test driver, persisted to a node file under .crane/.

The test driver keeps its state only inside one process. The sandbox loads it from
``.crane/sandbox.xml`` on connect (``test:///<absolute path>``) and writes it back,
atomically, at each checkpoint, so that it survives between crane runs like a host.
What the node file cannot say (autostart flags) goes to a JSON file beside it.
A file lock serialises crane runs that change the sandbox.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from crane_iac.errors import ProviderError

TEST_DOMAIN_NS = "http://libvirt.org/schemas/domain/test/1.0"
SHUTOFF = 5

EMPTY_NODE = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>2</threads><mhz>2400</mhz></cpu>
  <memory>268435456</memory>
  <pool type='dir'>
    <name>default</name>
    <target><path>{pool_dir}</path></target>
  </pool>
</node>
"""


class Sandbox:
    """Owns the node file and its lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.node_file = self.directory / "sandbox.xml"
        self.flags_file = self.directory / "sandbox-flags.json"
        self._lock: IO[str] | None = None
        self._empty: tempfile._TemporaryFileWrapper[str] | None = None

    def prepare(self, exclusive: bool, timeout: float = 0.0) -> str:
        """The URI to open. Runs that change the sandbox take its lock; nothing is written until a checkpoint."""
        if exclusive:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / "sandbox.lock", "a+")  # noqa: SIM115 - held for the run
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.release()
                        raise ProviderError(
                            f"the sandbox hypervisor {self.node_file} is in use by another crane run; "
                            "wait for it or pass --lock-timeout SECONDS") from None
                    time.sleep(0.1)
        if self.node_file.exists():
            return f"test://{self.node_file}"
        # no sandbox yet: start from an empty one outside .crane/, so that a run that changes nothing leaves no file
        self._empty = tempfile.NamedTemporaryFile("w", prefix="crane-empty-", suffix=".xml")  # noqa: SIM115
        self._empty.write(EMPTY_NODE.format(pool_dir=self.directory / "pool"))
        self._empty.flush()
        return f"test://{self._empty.name}"

    def flags(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.flags_file.read_text())
        except (OSError, ValueError):
            return {"autostart_domains": []}
        return {"autostart_domains": list(data.get("autostart_domains", []))}

    def save(self, domains: list[str], networks: list[str], pools: list[str], autostart: list[str]) -> None:
        """Write the whole sandbox: domain XML (with run state), networks, and pools with their volumes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = "".join(("<node>\n", *domains, *networks, *pools, "</node>\n"))
        self._write(self.flags_file, json.dumps({"autostart_domains": sorted(autostart)}))
        self._write(self.node_file, body)

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def release(self) -> None:
        if self._empty is not None:
            self._empty.close()
            self._empty = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def domain_for_node_file(xml: str, running: bool) -> str:
    """A domain's inactive XML as the node file wants it: with the test driver's run state."""
    if running:
        return xml
    head, _, tail = xml.partition(">")
    body, _, _ = tail.rpartition("</domain>")
    return f"{head} xmlns:test='{TEST_DOMAIN_NS}'>{body}  <test:runstate>{SHUTOFF}</test:runstate>\n</domain>\n"
