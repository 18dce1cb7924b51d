# A name where a resource is wanted, a resource where a list is, a value no member of a union takes.
# expect: main.py:10: vm.web: networks[0]: expected a Network, got str 'lan'
# expect: main.py:10: vm.web: volumes: expected a list, got Volume volume.disk
# expect: main.py:11: volume.clone: base: expected a Volume or a str, got int 5
# expect-line: 10
from crane_iac import VM, Network, Volume

lan = Network("lan", ipv4="10.0.0.0/24")
disk = Volume("disk", capacity_gib=1)
VM("web", vcpus=1, memory_mib=512, networks=["lan"], volumes=disk)
Volume("clone", capacity_gib=1, base=5)
