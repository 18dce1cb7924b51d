# An unknown field like no known one lists the fields the kind takes.
# expect: network.lan: colour: unknown field; Network takes bridge, create_before_destroy, depends_on, dhcp, hypervisor_name, ignore_changes, ipv4, ipv6, mode, protect, provider, vlan
# expect-line: 6
from crane_iac import Network

Network("lan", ipv4="10.0.0.0/24", colour="blue")
