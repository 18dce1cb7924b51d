"""The libvirt type as the provider registry sees it: the opener (``open_endpoint``), the endpoint's own crane.toml
keys (``Settings``), the rules for the resources it serves (``validate_resource``) and which kinds two of its
endpoints share (``shared_kinds``: one libvirtd's qemu:///system and lxc:///system share networks and storage).
Loading a project reads the last three, so this module imports libvirt itself only when an endpoint is opened."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_iac.providers.libvirt.settings import LibvirtSettings as Settings
from crane_iac.providers.libvirt.sharing import shared_kinds
from crane_iac.providers.libvirt.validation import validate_resource

if TYPE_CHECKING:
    from crane_iac.providers.libvirt.provider import LibvirtProvider

__all__ = ["Settings", "open_endpoint", "prepare", "shared_kinds", "validate_resource"]


def prepare() -> None:
    """Import the provider and libvirt, before the connection's thread starts (the registry's ``prepare``)."""
    import crane_iac.providers.libvirt.provider  # noqa: F401


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> LibvirtProvider:
    """A connection to ``settings["uri"]``, or to the sandbox in ``sandbox_dir`` when there is no uri."""
    from crane_iac.providers.libvirt.provider import LibvirtProvider

    own = Settings.model_validate({k: v for k, v in settings.items() if k != "uri"})
    return LibvirtProvider(settings.get("uri"), sandbox_dir=sandbox_dir, mutating=mutating,
                           domain_type=own.domain_type, lock_timeout=lock_timeout,
                           address_timeout=own.address_timeout, shutdown_timeout=own.shutdown_timeout,
                           reach_guests=own.reach_guests)
