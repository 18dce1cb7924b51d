# A value outside a fixed set lists the set.
# expect: network.lan: mode: expected one of 'nat', 'isolated', 'route', 'open', 'bridge' or 'openvswitch', got 'natt'
# expect-line: 6
from crane_iac import Network

Network("lan", mode="natt", ipv4="10.0.0.0/24")
