# expect: network.lan: ipv4: '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network
# expect-line: 5
from crane_iac import Network

Network("lan", ipv4="10.0.0.0/33")
