# expect: vm.a: invalid vcpus
# expect: network.n: invalid vlan
# expect: vm.b c: invalid name
# expect-line: 8
from crane_iac import VM, Network

n = Network("n", mode="openvswitch", bridge="br0", vlan=5000)
VM("a", vcpus=0, memory_mib=512, networks=[n])
VM("b c", vcpus=1, memory_mib=512)
