"""Tiny web servers that really boot: one network with DHCP, a storage pool, N guests booting a kernel directly, each
with a data disk in that pool, and every web server's address exported.

The kernel and initrd are the tiny test guest tests/guest/build.sh makes (a Debian cloud kernel and a busybox
initramfs that answers HTTP on port 80). The same stack runs on the sandbox (addresses simulated) and on a real
libvirtd (addresses leased by the network's dnsmasq). Variables, declared in crane.toml:
  prefix       prepended to every name (several copies can share a host)
  web_count    number of web servers
  vcpus        each guest's vCPUs (1 or 2: more are hot-plugged, fewer restart the guest)
  memory_mib   each guest's memory (it can grow live up to 256 MiB)
  autostart    whether libvirtd starts the guests when it starts
  subnet       the network's IPv4 subnet
  mode         the network's mode: open (no firewall rules), nat or isolated
  pool_dir     directory of the storage pool the stack declares for the data disks (crane makes and removes it)
  kernel       path of the kernel on the hypervisor host
  initrd       path of the initramfs on the hypervisor host
  cmdline      the kernel command line
"""

from crane_iac import VM, Network, StoragePool, Volume, export, variable

prefix = variable("prefix")
lan = Network(f"{prefix}lan", mode=variable("mode"), ipv4=variable("subnet"))
pool = StoragePool(f"{prefix}pool", path=variable("pool_dir"))

for i in range(1, variable("web_count") + 1):
    data = Volume(f"{prefix}web-{i}-data", capacity_gib=1, pool=pool, format="qcow2")
    web = VM(f"{prefix}web-{i}", vcpus=variable("vcpus"), max_vcpus=2, memory_mib=variable("memory_mib"), max_memory_mib=256,
             networks=[lan], volumes=[data], kernel=variable("kernel"), initrd=variable("initrd"),
             cmdline=variable("cmdline"), autostart=variable("autostart"))
    export(f"web-{i}-ipv4", web.ipv4)
