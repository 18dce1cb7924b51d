# expect: the stack raised ZeroDivisionError
# expect-line: 6
from crane_iac import VM

count = 0
per_vm = 1024 // count
VM("web", vcpus=1, memory_mib=per_vm)
