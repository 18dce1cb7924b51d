"""The ansible provider: a companion opened beside an endpoint's hypervisor provider, serving SSH keys and
configurations (playbook runs against the endpoint's guests) with ansible-runner."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crane_iac.providers.ansible.inventory import inventory
from crane_iac.providers.ansible.provider import AnsibleProvider
from crane_iac.providers.base import Provider
from crane_iac.resources.playbooks import playbook_digest

__all__ = ["AnsibleProvider", "inventory", "open_companion", "playbook_digest"]


def open_companion(hypervisor: Provider, *, state_dir: Path, mutating: bool = True,
                   project_dir: Path | None = None, settings: dict[str, Any] | None = None,
                   progress: Callable[[str], None] | None = None) -> AnsibleProvider:
    """The companion of ``hypervisor``: its configurations run only when the hypervisor ``reaches_guests`` (a
    provider that does not say is taken to). ``state_dir`` is this endpoint's own directory for crane's files
    (keys go in ``state_dir/keys``). ``settings``, all optional: ``key_dir`` (instead of state_dir/keys),
    ``project_dir`` (relative playbooks' directory; default the working directory), ``timeout`` (seconds a run may
    take, default 900). Without ``progress``, each host's progress goes to stderr."""
    settings = settings or {}
    return AnsibleProvider(
        reaches_guests=bool(getattr(hypervisor, "reaches_guests", True)),
        key_dir=Path(settings.get("key_dir") or state_dir / "keys"),
        project_dir=Path(project_dir or settings.get("project_dir") or Path.cwd()),
        progress=progress or _to_stderr, timeout=int(settings.get("timeout", 900)))


def _to_stderr(line: str) -> None:
    print(f"  configuring {line}", file=sys.stderr, flush=True)
