"""crane's stable MAC addresses. Each NIC of a VM or a container gets one derived from its resource's kind, its
name on the hypervisor and the NIC's index: the same on every run and on every host, so that a DHCP lease, a
reservation and a guest made again all keep it, and a replacement under a new name (``create_before_destroy``)
gets its own.

They lie in 52:54:00:xx:xx:xx: locally administered and unicast (the first octet's two low bits are 1 and 0),
the range QEMU and libvirt generate from. It is crane's convention, not one hypervisor's: libvirt takes any
unicast MAC and so does XenServer's ``VIF.MAC`` (Xen's own 00:16:3e is a registered OUI, for the addresses Xen
generates itself), so a stack's NICs keep their MACs whichever provider serves them. A provider that had to refuse
them would say so in its ``validate_resource``.
"""

from __future__ import annotations

import hashlib
import ipaddress

#: the first three octets of every MAC crane gives a NIC
PREFIX = "52:54:00"


def stable_mac(key: str) -> str:
    """The MAC of the NIC ``key`` names (``vm.web-1#0``), the same on every run."""
    digest = hashlib.sha256(key.encode()).digest()
    return "{}:{:02x}:{:02x}:{:02x}".format(PREFIX, *digest[:3])


def nic_macs(kind: str, physical: str, count: int) -> list[str]:
    """The MACs of a resource's ``count`` NICs, in order."""
    return [stable_mac(f"{kind}.{physical}#{i}") for i in range(count)]


def eui64_address(subnet: str, mac: str) -> str:
    """The address a NIC of MAC ``mac`` takes by SLAAC in ``subnet`` (an IPv6 network of prefix /64 or shorter): the
    subnet's first 64 bits and the modified EUI-64 interface identifier of the MAC (RFC 4291, appendix A: the MAC's
    halves around ``ff:fe``, with the universal/local bit flipped). ``52:54:00:12:34:56`` in ``fd00::/64`` is
    ``fd00::5054:ff:fe12:3456``."""
    octets = bytes(int(part, 16) for part in mac.split(":"))
    interface_id = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:6]
    network = ipaddress.IPv6Network(subnet)
    prefix = int(network.network_address) >> 64 << 64
    return str(ipaddress.IPv6Address(prefix | int.from_bytes(interface_id, "big")))
