# expect: syntax error
# expect-line: 5
from crane_iac import VM

vm = VM("web", vcpus=1, memory_mib=512
