"""The libvirt provider (KVM/QEMU, Xen through libvirt, and the embedded sandbox). ``LibvirtProvider`` is imported
on first use, so that what only reads the type's settings and rules (crane_iac.providers.libvirt.endpoint) does
not load libvirt-python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crane_iac.providers.libvirt.provider import LibvirtProvider

__all__ = ["LibvirtProvider"]


def __getattr__(name: str) -> Any:
    if name == "LibvirtProvider":
        from crane_iac.providers.libvirt.provider import LibvirtProvider

        return LibvirtProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
