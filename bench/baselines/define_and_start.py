"""Baseline for creating from empty: define and start the given networks and domains, nothing else."""

import json
import sys

import libvirt

conn = libvirt.open(sys.argv[1])
with open(sys.argv[2]) as handle:
    work = json.load(handle)
for xml in work["networks"]:
    conn.networkDefineXML(xml).create()
for xml in work["domains"]:
    conn.defineXML(xml).create()
print(len(work["domains"]), len(work["networks"]))
