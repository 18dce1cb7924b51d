# expect: vm.web: memory_mib: must be at least 16, got -5
# expect-line: 5
from crane_iac import VM

VM("web", vcpus=1, memory_mib=-5)
