# True is not VLAN 1: a bool is never taken where an int is wanted.
# expect: network.n: vlan: expected an int or a list, got bool True
# expect-line: 6
from crane_iac import Network

Network("n", mode="openvswitch", bridge="br0", vlan=True)
