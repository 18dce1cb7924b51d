"""Leased IPv6 addresses on the real libvirtd: two LXC containers on a network whose IPv4 and IPv6 subnets come
from address pools get the SLAAC addresses crane leased them (the EUI-64 of their MACs, set on their interfaces by
libvirt) and reach each other over IPv6; a QEMU guest on a pool's IPv6 network forms, from the router
advertisements of the network's dnsmasq, the very address crane leased it, and answers on it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.resources.macs import eui64_address
from tests.conftest import ProjectDir, ok
from tests.real.host import LXC_URI, REAL_ENDPOINT, LxcHost, RealHost, http_get

PREFIX = "cr6-"
POOLS = """
from crane_iac import VM, Container, IPv4Pool, IPv6Pool, Network
four = IPv4Pool("cr6-four", cidr="10.238.0.0/16", subnet_prefixlen=24)
six = IPv6Pool("cr6-six", prefix="fd00:238::/48")
"""
#: the containers' init: an HTTP server on every address (IPv6 and IPv4) saying its name, or (GET /peer/ADDRESS)
#: what the server at that IPv6 address says, fetched from inside this container
SERVER = '''
import http.server, os, socket, socketserver, urllib.request
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        verb, _, arg = self.path.strip("/").partition("/")
        if verb == "peer":
            with urllib.request.urlopen("http://[%s]:8080/" % arg, timeout=3) as answer:
                body = answer.read()
        else:
            body = os.environ["NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
Server(("::", 8080), Handler).serve_forever()
'''
CONTAINERS = POOLS + """
SERVER = {server!r}
lan = Network("cr6-lan", mode="isolated", ipv4=four.subnet(), ipv6=six.subnet())
for name in ("cr6-a", "cr6-b"):
    Container(name, networks=[lan], init=["/usr/bin/python3", "-c", SERVER], init_env={{"NAME": name}},
              memory_mib=64)
"""
GUEST = POOLS + """
v6 = Network("cr6-v6", mode="isolated", ipv6=six.subnet())
VM("cr6-vm", vcpus=1, memory_mib=128, networks=[v6], kernel="{kernel}", initrd="{initrd}", cmdline="console=ttyS0")
"""


@pytest.fixture
def project(real_host: RealHost, lxc_host: LxcHost, tmp_path: Path) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    real_host.sweep(PREFIX)
    project = ProjectDir(tmp_path)
    project.write_config(f'default_stack = "lxc"\n[stacks.lxc]\nfile = "stacks/lxc.py"\nuri = "{LXC_URI}"\n'
                         'shutdown_timeout = 2\n[stacks.vm]\nfile = "stacks/vm.py"\n' + REAL_ENDPOINT)
    project.write_stack(CONTAINERS.format(server=textwrap.dedent(SERVER)), name="lxc.py")
    project.write_stack(GUEST.format(kernel=real_host.kernel, initrd=real_host.initrd), name="vm.py")
    yield project
    for stack in ("lxc", "vm"):
        project.crane("destroy", "--auto-approve", "--stack", stack)
    lxc_host.sweep(PREFIX)
    real_host.sweep(PREFIX)


def leased_nic(project: ProjectDir, stack: str, address: str) -> tuple[str, str]:
    """The first NIC's IPv6 address and the /64 its network leased, checked against each other and the lease."""
    nic = json.loads(ok(project, "state", "show", address, "--stack", stack))["properties"]["nics"][0]
    shown = json.loads(ok(project, "ipam", "show", "cr6-six", "--json"))["leases"]
    network = "network.cr6-lan" if stack == "lxc" else "network.cr6-v6"
    (subnet,) = [x["value"] for x in shown if x["resource"] == network]
    assert nic["ipv6"] == eui64_address(subnet, nic["mac"]), (nic, subnet)
    pool = json.loads(ok(project, "ipam", "show", f"cr6-six:{subnet}", "--json"))["leases"]
    assert [x["value"] for x in pool if x["resource"] == address] == [nic["ipv6"]], pool
    return nic["ipv6"], subnet


def test_containers_reach_each_other_and_a_guest_answers_on_their_leased_ipv6(project: ProjectDir) -> None:
    ok(project, "apply", "--auto-approve", "--stack", "lxc")
    a, subnet = leased_nic(project, "lxc", "container.cr6-a")
    b, _ = leased_nic(project, "lxc", "container.cr6-b")
    # the host reaches a over IPv6, and a fetches b's name from b over IPv6 (and the other way round)
    assert http_get(f"[{a}]:8080", timeout=30) == "cr6-a"
    assert http_get(f"[{a}]:8080", f"/peer/{b}", timeout=30) == "cr6-b"
    assert http_get(f"[{b}]:8080", f"/peer/{a}", timeout=30) == "cr6-a"
    assert project.crane("plan", "--detailed-exitcode", "--stack", "lxc").code == 0  # read back as leased
    # the network announces the /64 for SLAAC: libvirt's dnsmasq sends router advertisements, serves no DHCPv6
    conf = Path("/var/lib/libvirt/dnsmasq/cr6-lan.conf").read_text()
    assert [line for line in conf.splitlines() if line.startswith("dhcp-range=fd00:238")] == [
        "dhcp-range=fd00:238::1,ra-only"], conf
    # a QEMU guest, which only brings its interface up: the kernel forms the EUI-64 address crane leased it
    ok(project, "apply", "--auto-approve", "--stack", "vm")
    guest, guest_subnet = leased_nic(project, "vm", "vm.cr6-vm")
    assert guest_subnet != subnet
    assert http_get(f"[{guest}]", timeout=120).strip() == "crane test guest"
    assert project.crane("plan", "--detailed-exitcode", "--stack", "vm").code == 0
