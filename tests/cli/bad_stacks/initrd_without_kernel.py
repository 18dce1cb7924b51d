# expect: initrd and cmdline need kernel=
# expect-line: 5
from crane_iac import VM

VM("tiny", vcpus=1, memory_mib=128, initrd="/boot/initrd.img", cmdline="console=ttyS0")
