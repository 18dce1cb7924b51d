# expect: vm.web: invalid memory_mib
# expect-line: 5
from crane_iac import VM

VM("web", vcpus=1, memory_mib=-5)
