# expect: network.uplink: mode='bridge' needs bridge=
# expect-line: 5
from crane_iac import Network

Network("uplink", mode="bridge")
