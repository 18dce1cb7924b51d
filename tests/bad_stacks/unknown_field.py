# expect: vm.web: invalid memory: Extra inputs are not permitted
# expect-line: 5
from crane_iac import VM

VM("web", vcpus=1, memory=512)
