"""Open a libvirt endpoint from its crane.toml settings (the provider registry's ``libvirt`` type), and the type's
own rules for the resources it serves (``validate_resource``, which the registry finds beside the opener)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crane_iac.providers.libvirt.provider import LibvirtProvider
from crane_iac.providers.libvirt.validation import validate_resource

__all__ = ["open_endpoint", "validate_resource"]


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> LibvirtProvider:
    """A connection to ``settings["uri"]``, or to the sandbox in ``sandbox_dir`` when there is no uri."""
    return LibvirtProvider(settings.get("uri"), sandbox_dir=sandbox_dir, mutating=mutating,
                           domain_type=settings.get("domain_type"), lock_timeout=lock_timeout,
                           address_timeout=settings.get("address_timeout", 120.0),
                           shutdown_timeout=settings.get("shutdown_timeout", 30.0),
                           reach_guests=settings.get("reach_guests"))
