# expect: dependency cycle:
# expect-line: 5
from crane_iac import VM

a = VM("a", vcpus=1, memory_mib=512)
b = VM("b", vcpus=1, memory_mib=512, depends_on=[a])
a.depends_on.append(b)
