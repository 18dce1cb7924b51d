# expect: vm.web: memory: unknown field; did you mean memory_mib?
# expect-line: 5
from crane_iac import VM

VM("web", vcpus=1, memory=512)
