# expect: network.lan: a VLAN tag needs mode='openvswitch'
# expect-line: 5
from crane_iac import Network

Network("lan", mode="nat", ipv4="10.0.0.0/24", vlan=10)
