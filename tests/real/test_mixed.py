"""A container and a QEMU guest on one network, over the addresses crane leased them, on the real libvirtd: the
network and the guest on a qemu:///system endpoint, the container on an lxc:///system endpoint of the same daemon,
which uses the network by its name (one libvirtd's drivers share its network driver: crane_iac/sharing.py).

The test guest (tests/guest/build.sh) only answers; the container runs this machine's Python, and on request
connects from its own network namespace to the guest's leased address: the guest's page comes back, to the
container's leased address. The plan after apply is empty although lxc:///system lists the network too (it is the
stack's once, on its owner), and destroy leaves nothing on either driver, nor the container's veth, cgroups and
supervisor."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_iac.resources.container import nic_device
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
from crane_iac import VM, Container, IPv4Pool, Network, export

pool = IPv4Pool("crx-pool", cidr="10.241.0.0/16", subnet_prefixlen=24)
# on qemu:///system: the network is made, read and deleted there
lan = Network("crx-lan", mode="nat", ipv4=pool.subnet(), provider="qemu")
guest = VM("crx-guest", vcpus=1, memory_mib=128, networks=[lan], kernel="{kernel}", initrd="{initrd}",
           cmdline="console=ttyS0", provider="qemu")
# on lxc:///system: the container takes the network by its name, and an address leased from it
box = Container("crx-box", networks=[lan], memory_mib=64, init=["/usr/bin/python3", "-c", {server!r}],
                provider="lxc")
export("guest", guest.nic_ipv4)
export("box", box.addresses)
'''


@pytest.fixture
def mixed(real_host: RealHost, lxc_host: LxcHost, tmp_path: Path) -> Iterator[ProjectDir]:
    lxc_host.sweep(PREFIX)
    project = ProjectDir(tmp_path)
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n[stacks.main.providers.qemu]\n' + REAL_ENDPOINT
                         + f'[stacks.main.providers.lxc]\nuri = "{LXC_URI}"\nshutdown_timeout = 2\n')
    project.write_stack(STACK.format(kernel=real_host.kernel, initrd=real_host.initrd,
                                     server=textwrap.dedent(SERVER)))
    yield project
    project.crane("destroy", "--auto-approve")
    lxc_host.sweep(PREFIX)


def test_a_container_and_a_qemu_guest_reach_each_other_over_leased_addresses(
        mixed: ProjectDir, real_host: RealHost, lxc_host: LxcHost) -> None:
    plan = ok(mixed, "plan")
    assert " on endpoint qemu (2 changes):" in plan and " on endpoint lxc (1 change):" in plan, plan
    ok(mixed, "apply", "--auto-approve")
    nothing = {"domains": [], "networks": [], "pools": [], "volumes": []}
    assert real_host.names(PREFIX) == {**nothing, "domains": ["crx-guest"], "networks": ["crx-lan"]}
    # the daemon's one network driver: the LXC driver sees the network too, and runs the container on it
    assert lxc_host.names(PREFIX) == {**nothing, "domains": ["crx-box"], "networks": ["crx-lan"]}
    assert "<source network='crx-lan'" in lxc_host.conn.lookupByName("crx-box").XMLDesc(0)

    [guest] = json.loads(ok(mixed, "output", "guest"))
    [box] = json.loads(ok(mixed, "output", "box"))
    assert (guest, box) == ("10.241.0.2", "10.241.0.3"), (guest, box)  # the lowest two the network's pool leases
    network = real_host.conn.networkLookupByName("crx-lan").XMLDesc(0)
    assert f"ip='{guest}'" in network  # the guest's DHCP reservation, for its MAC
    assert http_get(guest, timeout=60).strip() == "crane test guest"  # the guest took its leased address

    # the container, from its own namespace, reaches the guest's leased address, whose answer comes back to the
    # container's leased address
    reached = json.loads(http_get(f"{box}:8080", f"/fetch/{guest}", timeout=30))
    assert reached == {"from": box, "body": "crane test guest\n"}, reached

    # lxc:///system lists the network as well: it is the stack's once, on the qemu endpoint, and nothing changes
    result = mixed.crane("plan", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err

    destroyed = ok(mixed, "destroy", "--auto-approve")
    assert "3 deleted" in destroyed, destroyed
    assert real_host.names(PREFIX) == nothing and lxc_host.names(PREFIX) == nothing
    assert LxcHost.leftovers(PREFIX, [nic_device("crx-box", 0)]) == {"veths": [], "cgroups": [], "supervisors": []}
    assert "10.241.0.2 " not in ok(mixed, "ipam", "show", "crx-pool:10.241.0.0/24")
