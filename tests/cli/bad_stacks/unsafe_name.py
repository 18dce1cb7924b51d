# expect: vm.web 1: name: 'web 1' is not a safe hypervisor name
# expect-line: 5
from crane_iac import VM

VM("web 1", vcpus=1, memory_mib=512)
