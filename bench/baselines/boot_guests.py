"""Baseline for booting guests: what a hand-written libvirt-python script does for the same N tiny web servers.

Defines and starts an open-mode network with DHCP, creates one qcow2 data volume per guest in the pool, defines
and starts the domains (direct kernel boot, 128 MiB, virtio NIC and disk, balloon), then polls the network's DHCP
leases and each guest's HTTP server until all answer. Prints one JSON line: seconds to started, to every lease, to
every HTTP answer (all from its own start).

    python boot_guests.py URI POOL PREFIX SUBNET_PREFIX N KERNEL INITRD
"""

import json
import sys
import time
import urllib.request

import libvirt

uri, pool_name, prefix, net3, count, kernel, initrd = sys.argv[1:8]
n = int(count)
started = time.monotonic()
conn = libvirt.open(uri)
net = conn.networkDefineXML(f"""<network><name>{prefix}lan</name><forward mode='open'/>
  <ip address='{net3}.1' prefix='24'><dhcp><range start='{net3}.2' end='{net3}.254'/></dhcp></ip></network>""")
net.create()
net.setAutostart(1)
pool = conn.storagePoolLookupByName(pool_name)
macs = []
for i in range(1, n + 1):
    pool.createXML(f"""<volume><name>{prefix}web-{i}-data</name><capacity unit='GiB'>1</capacity>
      <allocation>0</allocation><target><format type='qcow2'/></target></volume>""", 0)
    mac = f"52:54:00:be:00:{i:02x}"
    macs.append(mac)
    dom = conn.defineXML(f"""<domain type='qemu'><name>{prefix}web-{i}</name>
      <memory unit='MiB'>256</memory><currentMemory unit='MiB'>128</currentMemory><vcpu current='1'>2</vcpu>
      <os><type>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>console=ttyS0</cmdline></os>
      <devices>
        <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
          <source pool='{pool_name}' volume='{prefix}web-{i}-data'/><target dev='vda' bus='virtio'/></disk>
        <interface type='network'><mac address='{mac}'/><source network='{prefix}lan'/><model type='virtio'/>
        </interface>
        <serial type='pty'/><console type='pty'/>
        <memballoon model='virtio'><stats period='2'/></memballoon>
      </devices></domain>""")
    dom.create()
running = time.monotonic() - started
leases: dict[str, str] = {}
while len(leases) < n:
    leases = {e["mac"]: e["ipaddr"] for e in net.DHCPLeases() if e["mac"] in macs}
    time.sleep(0.25)
leased = time.monotonic() - started
waiting = set(leases.values())
while waiting:
    for address in sorted(waiting):
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=2):
                waiting.discard(address)
        except OSError:
            pass
    if waiting:
        time.sleep(0.25)
print(json.dumps({"running": running, "leased": leased, "http": time.monotonic() - started}))
