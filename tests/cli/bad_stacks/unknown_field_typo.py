# A misspelt field names the field it was probably meant to be (and memory_mib is not also reported missing).
# expect: vm.a: memroy_mib: unknown field; did you mean memory_mib?
# expect-line: 6
from crane_iac import VM

VM("a", vcpus=1, memroy_mib=512)
