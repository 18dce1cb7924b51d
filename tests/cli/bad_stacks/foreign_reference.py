# expect: vm.web: refers to network.outside, which is not declared in this stack
# expect-line: 9
from crane_iac import VM, Network
from crane_iac.resources import Registry, collecting

with collecting(Registry(stack_file="elsewhere.py")):
    outside = Network("outside", ipv4="10.9.0.0/24")

VM("web", vcpus=1, memory_mib=512,
   networks=[outside])
