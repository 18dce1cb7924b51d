# expect: vm.web: duplicate address: vm.web is also declared at
# expect: main.py:6; give each resource a unique name
# expect-line: 7
from crane_iac import VM

VM("web", vcpus=1, memory_mib=512)
VM("web", vcpus=2, memory_mib=512)
