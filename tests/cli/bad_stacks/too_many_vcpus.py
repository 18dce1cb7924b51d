# expect: vm.big: vcpus: must be at most 255, got 256
# expect-line: 5
from crane_iac import VM

VM("big", vcpus=256, memory_mib=512)
