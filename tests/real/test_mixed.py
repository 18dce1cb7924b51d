"""A container and QEMU guests on networks, over the addresses crane leased them, on the real libvirtd: the networks
and the guests on a qemu:///system endpoint, the container on an lxc:///system endpoint of the same daemon, which
uses the networks by their names (one libvirtd's drivers share its network driver: crane_iac/sharing.py).

The test guest (tests/guest/build.sh) only answers; the container runs this machine's Python, and on request
connects from its own network namespace to a guest's leased address: the guest's page comes back, to the
container's leased address. Over IPv4 on crx-lan (NAT; its subnet from an IPv4 pool, the guest's address a DHCP
reservation), and over IPv6 on crx-v6 (its IPv4 subnet and its /64 from pools, announced for SLAAC) with a second
guest: on each lease the test guest's DHCP client flushes every address of its NIC, the SLAAC one too, so crx-v6
serves no DHCP, and the guest there keeps the address it forms from the router advertisements (as in
tests/real/test_pools_ipv6.py); the container's NIC on crx-v6 has both its leased addresses. The plan shows the
IPv6 addresses leased before the apply, the plan after apply is empty although lxc:///system lists the networks
too (each is the stack's once, on its owner), and destroy leaves nothing on either driver, nor the container's
veths, cgroups and supervisor, and gives every lease back."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.resources.container import nic_device
from crane_iac.resources.macs import eui64_address
from tests.conftest import ProjectDir, ok
from tests.real.host import LXC_URI, REAL_ENDPOINT, LxcHost, RealHost, http_get

PREFIX = "crx-"
#: the container's init: an HTTP server on 8080 that, asked for /fetch/ADDRESS, fetches http://ADDRESS/ itself and
#: answers with what came back and the address it came back to
SERVER = '''
import http.server, json, socket, socketserver
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        verb, _, address = self.path.strip("/").partition("/")
        try:
            with socket.create_connection((address, 80), timeout=5) as conn:
                local = conn.getsockname()[0]
                conn.sendall(b"GET / HTTP/1.0\\r\\nHost: " + address.encode() + b"\\r\\n\\r\\n")
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            data = json.dumps({"from": local, "body": reply.split(b"\\r\\n\\r\\n", 1)[-1].decode()}).encode()
            self.send_response(200)
        except OSError as exc:
            data = str(exc).encode()
            self.send_response(502)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer(("", 8080), Handler).serve_forever()
'''
STACK = '''
from crane_iac import VM, Container, IPv4Pool, IPv6Pool, Network, export

pool = IPv4Pool("crx-pool", cidr="10.241.0.0/16", subnet_prefixlen=24)
six = IPv6Pool("crx-six", prefix="fd00:241::/48")
# on qemu:///system: the networks are made, read and deleted there
lan = Network("crx-lan", mode="nat", ipv4=pool.subnet(), provider="qemu")
# dual-stack, without DHCP: the test guest's DHCP client, on a lease, would flush its SLAAC address with the rest
v6 = Network("crx-v6", mode="isolated", ipv4=pool.subnet(), ipv6=six.subnet(), dhcp=False, provider="qemu")
guest = VM("crx-guest", vcpus=1, memory_mib=128, networks=[lan], kernel="{kernel}", initrd="{initrd}",
           cmdline="console=ttyS0", provider="qemu")
guest6 = VM("crx-guest6", vcpus=1, memory_mib=128, networks=[v6], nic_ipv4=[None], kernel="{kernel}",
            initrd="{initrd}", cmdline="console=ttyS0", provider="qemu")
# on lxc:///system: the container takes the networks by their names, and on each the addresses leased from it
box = Container("crx-box", networks=[lan, v6], ipv4=[lan.lease(), v6.lease()], memory_mib=64,
                init=["/usr/bin/python3", "-c", {server!r}], provider="lxc")
export("guest", guest.nic_ipv4)
export("box", box.addresses)
'''


@pytest.fixture
def mixed(real_host: RealHost, lxc_host: LxcHost, tmp_path: Path) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    real_host.sweep(PREFIX)
    project = ProjectDir(tmp_path)
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.qemu]\n' + REAL_ENDPOINT
                         + f'[stacks.main.providers.lxc]\nuri = "{LXC_URI}"\nshutdown_timeout = 2\n')
    project.write_stack(STACK.format(kernel=real_host.kernel, initrd=real_host.initrd,
                                     server=textwrap.dedent(SERVER)))
    yield project
    project.crane("destroy", "--auto-approve")
    lxc_host.sweep(PREFIX)
    real_host.sweep(PREFIX)


def leases(project: ProjectDir, pool: str) -> dict[str, str]:
    """A pool's leases: the leasing resource's address → the value leased (one lease each in these pools)."""
    shown = json.loads(ok(project, "ipam", "show", pool, "--json"))["leases"]
    return {lease["resource"]: lease["value"] for lease in shown}


def slaac_ipv6(project: ProjectDir, address: str, index: int) -> tuple[str, str]:
    """A NIC's IPv6 address, which must be its SLAAC one in the /64 crx-v6 leased; and that /64."""
    nic = json.loads(ok(project, "state", "show", address))["properties"]["nics"][index]
    subnet = leases(project, "crx-six")["network.crx-v6"]
    assert nic["ipv6"] == eui64_address(subnet, nic["mac"]), (nic, subnet)
    return str(nic["ipv6"]), subnet


def test_a_container_and_a_qemu_guest_reach_each_other_over_leased_addresses(
        mixed: ProjectDir, real_host: RealHost, lxc_host: LxcHost) -> None:
    plan = ok(mixed, "plan")
    assert " on endpoint qemu (4 changes):" in plan and " on endpoint lxc (1 change):" in plan, plan
    ok(mixed, "apply", "--auto-approve")
    nothing = {"domains": [], "networks": [], "pools": [], "volumes": []}
    networks = ["crx-lan", "crx-v6"]
    assert real_host.names(PREFIX) == {**nothing, "domains": ["crx-guest", "crx-guest6"], "networks": networks}
    # the daemon's one network driver: the LXC driver sees the networks too, and runs the container on them
    assert lxc_host.names(PREFIX) == {**nothing, "domains": ["crx-box"], "networks": networks}
    box_xml = lxc_host.conn.lookupByName("crx-box").XMLDesc(0)
    assert "<source network='crx-lan'" in box_xml and "<source network='crx-v6'" in box_xml, box_xml

    [guest] = json.loads(ok(mixed, "output", "guest"))
    box, box_on_v6 = json.loads(ok(mixed, "output", "box"))
    # the lowest two crx-lan's pool leases, and the lowest of crx-v6's (the IPv4 pool's next /24)
    assert (guest, box, box_on_v6) == ("10.241.0.2", "10.241.0.3", "10.241.1.2"), (guest, box, box_on_v6)
    assert leases(mixed, "crx-pool:10.241.0.0/24") == {"vm.crx-guest": guest, "container.crx-box": box}
    assert leases(mixed, "crx-pool:10.241.1.0/24") == {"container.crx-box": box_on_v6}
    network = real_host.conn.networkLookupByName("crx-lan").XMLDesc(0)
    assert f"ip='{guest}'" in network  # the guest's DHCP reservation, for its MAC
    assert http_get(guest, timeout=60).strip() == "crane test guest"  # the guest took its leased address

    # the container, from its own namespace, reaches the guest's leased address, whose answer comes back to the
    # container's leased address
    reached = json.loads(http_get(f"{box}:8080", f"/fetch/{guest}", timeout=30))
    assert reached == {"from": box, "body": "crane test guest\n"}, reached

    # the same over IPv6: the plan showed the addresses leased, the container's domain has its own, the guest forms
    # its own by SLAAC, and the container reaches it from its own
    (box6, subnet), (guest6, _) = slaac_ipv6(mixed, "container.crx-box", 1), slaac_ipv6(mixed, "vm.crx-guest6", 0)
    assert leases(mixed, f"crx-six:{subnet}") == {"container.crx-box": box6, "vm.crx-guest6": guest6}
    assert f'"ipv6": "{box6}"' in plan and f'"ipv6": "{guest6}"' in plan, plan
    assert f"<ip address='{box6}' family='ipv6' prefix='64'/>" in box_xml, box_xml
    conf = Path("/var/lib/libvirt/dnsmasq/crx-v6.conf").read_text()  # router advertisements only: no DHCP
    assert [line for line in conf.splitlines() if line.startswith("dhcp-range=")] == [
        "dhcp-range=fd00:241::1,ra-only"], conf
    assert http_get(f"[{guest6}]", timeout=120).strip() == "crane test guest"
    reached = json.loads(http_get(f"{box}:8080", f"/fetch/{guest6}", timeout=30))
    assert reached == {"from": box6, "body": "crane test guest\n"}, reached

    # lxc:///system lists the networks as well: each is the stack's once, on the qemu endpoint, and nothing changes
    result = mixed.crane("plan", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err

    destroyed = ok(mixed, "destroy", "--auto-approve")
    assert "5 deleted" in destroyed, destroyed
    assert real_host.names(PREFIX) == nothing and lxc_host.names(PREFIX) == nothing
    devices = [nic_device("crx-box", 0), nic_device("crx-box", 1)]
    assert LxcHost.leftovers(PREFIX, devices) == {"veths": [], "cgroups": [], "supervisors": []}
    # every lease goes back: the networks' subnets, the guest's reservation, the container's addresses
    for pool in ("crx-pool", "crx-pool:10.241.0.0/24", "crx-pool:10.241.1.0/24", "crx-six", f"crx-six:{subnet}"):
        assert leases(mixed, pool) == {}, pool
