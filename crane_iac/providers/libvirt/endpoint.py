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
    """Import libvirt and what opens a connection, before the connection's thread starts (the registry's
    ``prepare``). The rest of the provider (its kinds, the resource models they use) is imported by that thread once
    the connection is open: opening the sandbox's node file takes seconds in libvirt's C code, with the GIL free, so
    the open starts as early as it can and the imports of the plan and the stack run go on beside it."""
    import crane_iac.providers.libvirt.sandbox  # noqa: F401


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> LibvirtProvider:
    """A connection to ``settings["uri"]``, or to the sandbox in ``sandbox_dir`` when there is no uri."""
    from crane_iac.providers.libvirt.sandbox import open_host

    own = Settings.model_validate({k: v for k, v in settings.items() if k != "uri"})
    uri = settings.get("uri")
    host = open_host(uri, sandbox_dir=sandbox_dir, mutating=mutating, lock_timeout=lock_timeout)
    try:
        from crane_iac.providers.libvirt.provider import LibvirtProvider

        return LibvirtProvider(uri, sandbox_dir=sandbox_dir, mutating=mutating, domain_type=own.domain_type,
                               lock_timeout=lock_timeout, address_timeout=own.address_timeout,
                               shutdown_timeout=own.shutdown_timeout, reach_guests=own.reach_guests, host=host)
    except BaseException:
        host.close()
        raise
