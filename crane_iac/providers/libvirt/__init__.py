"""The libvirt provider (KVM/QEMU, Xen through libvirt, and the embedded sandbox)."""

from crane_iac.providers.libvirt.provider import LibvirtProvider

__all__ = ["LibvirtProvider"]
