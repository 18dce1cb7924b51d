# expect: mode='nat' needs an ipv4 subnet
# expect-line: 5
from crane_iac import Network

Network("lan", mode="nat", ipv6="fd00:5::/64")
