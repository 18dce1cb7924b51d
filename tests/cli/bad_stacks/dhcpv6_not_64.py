# expect: DHCPv6 needs a /64 subnet, not 'fd00:1::/48'
# expect-line: 5
from crane_iac import Network

Network("lan", mode="nat", ipv4="10.1.0.0/24", ipv6="fd00:1::/48")
