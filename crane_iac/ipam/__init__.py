"""Address management: pools of IPv4 and IPv6 addresses and subnets, and the leases they hand out."""
