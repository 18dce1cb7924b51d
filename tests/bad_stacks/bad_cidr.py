# expect: network.lan: invalid ipv4
# expect-line: 5
from crane_iac import Network

Network("lan", ipv4="10.0.0.0/33")
