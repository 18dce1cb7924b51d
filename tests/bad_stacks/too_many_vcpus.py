# expect: less than or equal to 255
# expect-line: 5
from crane_iac import VM

VM("big", vcpus=256, memory_mib=512)
