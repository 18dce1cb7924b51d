# No coercion: a str "2" or a float 512.0 is not an int, 1 is not a bool, "yes" is not a bool; each is reported.
# expect: main.py:9: vm.a: vcpus: expected an int, got str '2'
# expect: main.py:9: vm.a: memory_mib: expected an int, got float 512.0
# expect: main.py:9: vm.a: running: expected a bool, got int 1
# expect: main.py:10: network.n: dhcp: expected a bool, got str 'yes'
# expect-line: 9
from crane_iac import VM, Network

VM("a", vcpus="2", memory_mib=512.0, running=1)
Network("n", ipv4="10.0.0.0/24", dhcp="yes")
