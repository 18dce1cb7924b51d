# expect: vm.a: vcpus: must be at least 1, got 0
# expect: network.n: vlan: a VLAN tag is 1 to 4094 (0 means untagged, 4095 is reserved), got 5000
# expect: vm.b c: name: 'b c' is not a safe hypervisor name
# expect-line: 8
from crane_iac import VM, Network

n = Network("n", mode="openvswitch", bridge="br0", vlan=5000)
VM("a", vcpus=0, memory_mib=512, networks=[n])
VM("b c", vcpus=1, memory_mib=512)
