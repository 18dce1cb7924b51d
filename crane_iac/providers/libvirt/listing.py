"""A bulk listing's domains as what their XML alone says (``DomainFacts``), and ``ParsedDomains``: those facts
remembered by the XML's digest between runs, where the host keeps a file for them (the sandbox does).

Why remember them: a no-op plan of 10,000 VMs on the sandbox spends about 0.6 s of its read in ElementTree's parse
of XML that has not changed since the last run read it, and as much again turning the trees into properties
(docs/benchmarks.md). A domain's XML is the whole input of that work (with the three things the read adds after:
whether it runs, whether it starts with the host, and which volume a disk's path is), so a digest of the XML names
its result exactly. The runtime ``id`` in the root tag, which the test driver renumbers as it loads its node file
and a real host as guests start, is left out of the digest; nothing parsed depends on it.

Safe by construction: an entry is used only for XML whose digest (BLAKE2b, 128 bits) it was made from, by the
same parser (the file's header names a digest of this module's and xml.py's source, so another version of crane
starts afresh); each use decodes the entry anew, so nothing read is shared between two reads. A file that cannot
be read or parsed is ignored and rewritten; one that cannot be written is left as it was (the next read parses
again). It holds what a read reports anyway (properties, owner, UUID), nothing secret. Only the entries of the
domains listed last are kept, so it does not grow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from crane_iac.objects import Owner
from crane_iac.providers.libvirt import xml as lx

#: the root tag's runtime id (``<domain type='test' id='42'>``)
_RUNTIME_ID = re.compile(r"""\s+id=(['"])\d+\1""")


@dataclass(slots=True)
class DomainFacts:
    """What one domain's XML says: its owner, UUID, whether it is a container, its properties with disk and mount
    paths as written (``finished`` completes them) and, for a container, the directories it mounts."""

    owner: Owner | None
    uuid: str | None
    container: bool
    props: dict[str, Any]
    directories: list[str]

    def finished(self, *, running: bool, autostart: bool, volume_by_path: dict[str, str]) -> dict[str, Any]:
        """The properties as the read reports them: with whether the domain runs and starts with the host, and each
        path a volume has as that volume's ``pool/volume``."""
        props = self.props
        props["running"] = running
        props["autostart"] = autostart
        if volume_by_path:
            if self.container:
                props["mounts"] = {path: volume_by_path.get(source, source)
                                   for path, source in props["mounts"].items()}
            else:
                props["disks"] = [volume_by_path.get(disk, disk) for disk in props["disks"]]
        return props


def facts_of(root: ET.Element) -> DomainFacts:
    """Parse one domain's XML tree."""
    container = lx.is_container(root)
    parse = lx.parse_container if container else lx.parse_domain
    # with no volumes known, a disk on a path keeps its path; a pool's volume is ``pool/volume`` either way
    props = parse(root, running=False, autostart=False, volume_by_path={})
    directories = [source.get("dir") or "" for source in root.iterfind("devices/filesystem/source")] \
        if container else []
    return DomainFacts(lx.owner_of(root), root.findtext("uuid"), container, props, directories)


@cache
def _parser_digest() -> str:
    """What makes an entry's content: this module's and xml.py's source, and the format of the file."""
    digest = hashlib.blake2b(b"crane domain facts 1", digest_size=16)
    for module in (__file__, lx.__file__):
        try:
            digest.update(Path(module).read_bytes())
        except OSError:  # no source beside the bytecode: nothing can be trusted, so nothing is kept
            return ""
    return digest.hexdigest()


class ParsedDomains:
    """Domain XML → ``DomainFacts``, from ``path`` where an earlier read left the same XML's (or None: parse
    every time). ``save()`` after the listing keeps what this one read."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._parser = _parser_digest() if path is not None else ""
        self._known = self._load() if self._parser else {}
        self._seen: dict[str, str] = {}
        self._parsed = 0

    def _load(self) -> dict[str, str]:
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return {}
        header, _, body = text.partition("\n")
        if header != self._parser:
            return {}
        known = {}
        for line in body.splitlines():
            key, tab, entry = line.partition("\t")
            if tab:
                known[key] = entry
        return known

    def facts(self, xml: str) -> DomainFacts:
        """The facts of one domain's XML: remembered, or parsed now."""
        if not self._parser:  # nothing kept: no digest to take
            self._parsed += 1
            return facts_of(ET.fromstring(xml))
        head, _, body = xml.partition(">")
        key = hashlib.blake2b(_RUNTIME_ID.sub("", head, count=1).encode() + body.encode(),
                              digest_size=16).hexdigest()
        entry = self._known.get(key)
        if entry is not None:
            try:
                owner, uuid, container, props, directories = json.loads(entry)
                self._seen[key] = entry
                return DomainFacts(Owner(*owner) if owner else None, uuid, container, props, directories)
            except (ValueError, TypeError):
                pass  # not what this parser wrote: parsed again below
        facts = facts_of(ET.fromstring(xml))
        self._parsed += 1
        owner = [facts.owner.stack, facts.owner.address] if facts.owner else None
        self._seen[key] = json.dumps([owner, facts.uuid, facts.container, facts.props, facts.directories],
                                     separators=(",", ":"))
        return facts

    @property
    def parsed(self) -> int:
        """How many domains this listing parsed (the rest were remembered)."""
        return self._parsed

    def save(self) -> None:
        """Keep the entries of the domains this listing read, if they differ from the file's; quietly not where the
        file cannot be written."""
        if self.path is None or not self._parser or (not self._parsed and len(self._seen) == len(self._known)):
            return
        lines = [self._parser, *(f"{key}\t{entry}" for key, entry in self._seen.items())]
        try:
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        except OSError:
            return
        try:
            with open(fd, "w", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
            os.replace(temporary, self.path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)


def runs(xml: str) -> bool:
    """Whether a domain's live XML says it runs: only a running domain's has a runtime id."""
    return _RUNTIME_ID.search(xml.partition(">")[0]) is not None
