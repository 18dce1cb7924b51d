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
from pathlib import Path
from typing import IO

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
        self.directory = directory
        self.node_file = directory / "sandbox.xml"
        self.flags_file = directory / "sandbox-flags.json"
        self._lock: IO[str] | None = None

    @property
    def uri(self) -> str:
        return f"test://{self.node_file.resolve()}"

    def prepare(self, exclusive: bool) -> None:
        """Create an empty sandbox if there is none; take the lock (exclusive for runs that change it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_path = self.directory / "sandbox.lock"
        self._lock = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the run
        fcntl.flock(self._lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not self.node_file.exists():
            self._write(self.node_file, EMPTY_NODE.format(pool_dir=self.directory.resolve() / "pool"))

    def flags(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.flags_file.read_text())
        except (OSError, ValueError):
            return {"autostart_domains": []}
        return {"autostart_domains": list(data.get("autostart_domains", []))}

    def save(self, domains: list[str], networks: list[str], pools: list[str], autostart: list[str]) -> None:
        """Write the whole sandbox: domain XML (with run state), networks, and pools with their volumes."""
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
