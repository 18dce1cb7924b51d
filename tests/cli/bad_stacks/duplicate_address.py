# expect: vm.web: duplicate address (first declared at
# expect-line: 6
from crane_iac import VM

VM("web", vcpus=1, memory_mib=512)
VM("web", vcpus=2, memory_mib=512)
