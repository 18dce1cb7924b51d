# expect: bridge 'crbr0' is already used by network.front
# expect-line: 6
from crane_iac import Network

Network("front", mode="nat", bridge="crbr0", ipv4="10.1.0.0/24")
Network("back", mode="isolated", bridge="crbr0", ipv4="10.2.0.0/24")
