"""Baseline for a no-op plan: open the hypervisor, list every domain and network, parse their XML."""

import sys
import xml.etree.ElementTree as ET

import libvirt

conn = libvirt.open(sys.argv[1])
domains = sum(len(ET.fromstring(d.XMLDesc(0))) for d in conn.listAllDomains(0))
networks = sum(len(ET.fromstring(n.XMLDesc(0))) for n in conn.listAllNetworks(0))
print(domains, networks)
