# expect: max_memory_mib (512) is below memory_mib (1024)
# expect-line: 5
from crane_iac import VM

VM("web", vcpus=1, memory_mib=1024, max_memory_mib=512)
