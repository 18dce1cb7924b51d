"""AppDomain: CRANE's web PaaS unit, one component: a load balancer, N web servers and a storage server.

``AppDomain("shop", network=lan)`` expands, under ``appdomain.shop``, into the hosts (LXC containers, or VMs),
the SSH key crane configures them with, the storage server's data volume, and one configuration run per host:
storage first, then each web server (its app talks to the database), then the load balancer (its backend lists
the web servers that are configured). Changing one field changes only what it must: ``web.size`` 3 → 5 adds two
web servers and their runs and runs the balancer's again, which adds them to the running HAProxy through its
runtime API (no reload); 5 → 2 drains and removes three from HAProxy first, then destroys them.

Addresses: the hosts take fixed IPv4 addresses of ``network``'s subnet, consecutive from its ``first_host``-th
address: the balancer, the storage server, then web-1 … web-``max``, so a web server keeps its address whatever the
size. Give an app domain a network of its own (or one whose DHCP clients cannot be handed these addresses).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, ValidationError, model_validator

from crane_iac.appdomain import haproxy
from crane_iac.autoscaler.policy import ScalingPolicy
from crane_iac.errors import CraneError, Diagnostic, DiagnosticsError
from crane_iac.projectkey import agent_key_name
from crane_iac.resources.base import Resource, setting
from crane_iac.resources.cloudinit import CloudInit
from crane_iac.resources.component import Component
from crane_iac.resources.configuration import Configuration
from crane_iac.resources.container import Container
from crane_iac.resources.hostaddresses import host_address, leases_addresses
from crane_iac.resources.messages import describe
from crane_iac.resources.network import Network
from crane_iac.resources.pool import StoragePool
from crane_iac.resources.ssh_key import SshKey
from crane_iac.resources.vm import VM
from crane_iac.resources.volume import Volume
from crane_iac.scaling import ScalableTier, TierHost

_HERE = Path(__file__).resolve().parent
#: the containers' init, files/init.sh (sshd with the domain's key, then runsvdir as PID 1), passed in the
#: container's environment and run by the host's /bin/sh: the container's definition names no path of crane's own
#: installation (another checkout, or CI, would see it as a change), and the script's text is all it needs
INIT = ["/bin/sh", "-c", 'eval "$(printf %s "$CRANE_INIT" | base64 -d)"']


def init_script() -> str:
    """files/init.sh in base64: an environment value without the characters libvirt 9.0 does not escape there."""
    return base64.b64encode((_HERE / "files" / "init.sh").read_bytes()).decode()
PLAYBOOKS = "crane:appdomain"
SSH_PORT = 22
#: the balancer's own page (/stats, and /healthz while HAProxy runs)
STATS_PORT = 8404
#: where the balancer's HAProxy keeps its admin socket and its servers' states (tmpfs in a container)
RUNTIME_SOCKET = "/run/crane/haproxy/admin.sock"
STATE_FILE = "/run/crane/haproxy/servers.state"
#: seconds a new web server has to pass its health check before the balancer's run fails (it stays out of the pool)
SERVER_READY_TIMEOUT = 120


R = TypeVar("R", bound=Resource)


def make(cls: Callable[..., R], name: str, /, **fields: Any) -> R:
    """``cls(name, **fields)``: a resource built positionally by name, as stack files do (the pydantic plugin of
    mypy knows the fields, not the name-first constructor resources have)."""
    return cls(name, **fields)


class _Part(BaseModel):
    """A part of an app domain: invalid fields are a ``DiagnosticsError`` in crane's words, at the stack's line."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DiagnosticsError([Diagnostic(f"{type(self).__name__}: {line}")
                                    for line in describe(type(self), exc.errors())]) from None


class WebTier(_Part):
    """The web servers: ``size`` of them, kept within [``min``, ``max``] (the autoscaler moves ``size``)."""

    size: int = Field(default=2, ge=0)
    min: int = Field(default=1, ge=0)
    max: int = Field(default=8, ge=1, le=200)
    memory_mib: int = Field(default=256, ge=32)
    vcpus: int = Field(default=1, ge=1)
    port: int = Field(default=8080, ge=1, le=65535)

    @model_validator(mode="after")
    def _range(self) -> WebTier:
        if self.min > self.max:
            raise ValueError(f"web.min ({self.min}) is above web.max ({self.max})")
        if not self.min <= self.size <= self.max:
            raise ValueError(f"web.size {self.size} is outside [min {self.min}, max {self.max}]: "
                             "change size, or widen min/max")
        return self


class Storage(_Part):
    """The storage server: PostgreSQL, its files on a directory volume in ``pool`` that outlives the host."""

    memory_mib: int = Field(default=512, ge=64)
    vcpus: int = Field(default=1, ge=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(default="app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool: InstanceOf[StoragePool] | str = "default"


class LoadBalancer(_Part):
    """HAProxy in front of the web servers: ``balance`` is HAProxy's algorithm; ``health_check`` the path each
    server must answer 200 on; a server being removed gets up to ``drain_timeout`` seconds to finish its requests."""

    port: int = Field(default=80, ge=1, le=65535)
    health_check: str = Field(default="/healthz", pattern=r"^/\S*$")
    balance: str = "leastconn"
    memory_mib: int = Field(default=128, ge=32)
    vcpus: int = Field(default=1, ge=1)
    drain_timeout: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _algorithm(self) -> LoadBalancer:
        haproxy.balance_line(self.balance)  # a ValueError naming the algorithms HAProxy takes
        return self


class AppDomain(Component):
    """One customer's web application: ``AppDomain("shop", network=lan, web=WebTier(size=3))``.

    ``hosts="container"`` (default) runs each host as an LXC container on the endpoint (``lxc:///system``; the
    embedded sandbox plans and records them, and skips the configuration runs: nothing runs there);
    ``hosts="vm"`` runs VMs booted from ``image`` (a Volume holding a cloud image with cloud-init and sshd), which
    needs ``ssh_key``: the public key (``<ssh_key>.pub``) goes into their cloud-init seed; or VMs made from the
    hypervisor's ``template`` (a XenServer template: ``VM(template=...)``), which has sshd and trusts the key
    already, and whose guests take the addresses crane gives their NICs themselves (no cloud-init seed: the
    template is the configuration). ``ssh_key`` names the private key crane configures the hosts with; without it
    crane makes one under the project's ``.crane/``. Where crane cannot reach the guests (the embedded sandbox, an
    endpoint with ``reach_guests = false``) the configuration runs are planned and recorded as skipped.
    """

    kind = "appdomain"

    network: InstanceOf[Network]
    web: WebTier = WebTier()
    storage: Storage = Storage()
    lb: LoadBalancer = LoadBalancer()
    hosts: Literal["container", "vm"] = "container"
    image: InstanceOf[Volume] | None = None
    #: hosts="vm": the hypervisor's template the VMs are made from, instead of ``image``
    template: str | None = Field(default=None, min_length=1)
    ssh_key: str | None = None
    first_host: int = Field(default=10, ge=2)
    #: resize the web tier automatically (``crane autoscale``): the policy's thresholds on the servers' memory (or
    #: CPU, or session rate); None: the size is the stack's (or a setting's) alone
    autoscale: InstanceOf[ScalingPolicy] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AppDomain:
        ports = {"lb.port": self.lb.port, "web.port": self.web.port, "storage.port": self.storage.port}
        for name, port in ports.items():
            if port == SSH_PORT:
                raise ValueError(f"{name} {port} clashes with sshd, which crane configures the hosts through")
            if port == STATS_PORT and name == "lb.port":
                raise ValueError(f"lb.port {port} clashes with the balancer's own stats port {STATS_PORT}")
        if self.network.ipv4 is None:
            raise ValueError(f"network {self.network.name!r} has no ipv4 subnet to give the hosts addresses from")
        if self.autoscale is not None and self.web.min == 0:
            # decision (docs/decisions/agent-trust.md): no scale-from-zero; at size 0 no server reports load
            raise ValueError("web.min 0 with autoscale: crane does not scale a tier up from zero servers (none "
                             "would report the load that should grow it again); give web.min 1 or more, or drop "
                             "autoscale and set web.size yourself")
        if self.autoscale is not None and self.autoscale.reads_agents and \
                self.autoscale.agent_port in (self.web.port, SSH_PORT):
            raise ValueError(f"autoscale.agent_port {self.autoscale.agent_port} clashes with the web servers' "
                             f"{'app' if self.autoscale.agent_port == self.web.port else 'sshd'}")
        subnet = ipaddress.ip_network(self.network.ipv4)
        needed = self.first_host + 2 + self.web.max
        if needed > subnet.num_addresses - 1:
            raise ValueError(f"network {self.network.name!r} ({subnet}) has no room for {2 + self.web.max} hosts "
                             f"from its address {self.first_host}: use a larger subnet, a lower first_host or a "
                             "lower web.max")
        if self.image is not None and self.template is not None:
            raise ValueError("give image=<a Volume with a cloud image> or template=<the hypervisor's template>, not "
                             "both")
        if self.hosts == "vm" and self.template is None and (self.image is None or self.ssh_key is None):
            raise ValueError("hosts='vm' needs image=<a Volume with a cloud image> and ssh_key=<a private key path "
                             "whose .pub is beside it>, or template=<the hypervisor's template the VMs are made "
                             "from>")
        if self.hosts == "container" and (self.image is not None or self.template is not None):
            raise ValueError("image and template are for hosts='vm'; containers run the host's own system")
        return self

    @property
    def size_setting(self) -> str:
        """The durable setting that holds the web tier's desired size when someone set it (the autoscaler, or
        ``crane setting set``): it wins over ``web.size``, kept within [``web.min``, ``web.max``]."""
        return f"{self.address}/web.size"

    @property
    def web_size(self) -> int:
        """The web tier's size in effect: the setting (clamped into the declared range, so a user who narrows
        min/max is obeyed at once), else ``web.size``."""
        wanted = setting(self.size_setting, self.web.size)
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            return self.web.size
        return min(max(wanted, self.web.min), self.web.max)

    @property
    def members_setting(self) -> str:
        """The durable setting that lists which web servers make up the tier, oldest first (``[1, 3]``: web-1 and
        web-3): the autoscaler writes it when its scale-in removes a server other than the newest."""
        return f"{self.address}/web.members"

    def web_members(self) -> list[int]:
        """The web servers' numbers, oldest first: those the members setting lists (within [1, ``web.max``], at
        most ``size`` of them, the newest dropped first), then the lowest free numbers up to the size in effect.
        Without the setting: 1 … size."""
        size, listed = self.web_size, setting(self.members_setting, None)
        if listed is None:
            return list(range(1, size + 1))
        if not isinstance(listed, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in listed):
            raise CraneError(f"{self.address}: setting {self.members_setting} = {listed!r} is not a list of web "
                             f"server numbers; `crane setting unset {self.members_setting} --why ...` hands the "
                             "choice back")
        members = list(dict.fromkeys(i for i in listed if 1 <= i <= self.web.max))[:size]
        free = (i for i in range(1, self.web.max + 1) if i not in members)
        return members + [next(free) for _ in range(size - len(members))]

    def host_address(self, index: int) -> str:
        """The ``index``-th host's address: 0 the balancer, 1 the storage server, 1+i web-i. On a network whose
        subnet comes from an address pool, the one the pool leased to the host; else the fixed offset
        ``first_host + index`` in the subnet."""
        return host_address(self.network, self.first_host, index, getattr(self, "leased_addresses", {}))

    def _pooled(self) -> bool:
        """Whether the domain's network takes its subnet from an address pool (its hosts then lease theirs)."""
        return leases_addresses(self.network)

    def build(self) -> None:
        self.declared_tiers: list[ScalableTier] = []
        #: host index → the address an address pool leased it (containers on a pool's network)
        self.leased_addresses: dict[int, str] = {}
        key = make(SshKey, "key", path=self.ssh_key)
        self.key = key
        self.lb_host = self._host("lb", 0, self.lb.memory_mib, self.lb.vcpus, key)
        self.storage_host = self._host("storage", 1, self.storage.memory_mib, self.storage.vcpus, key, data=True)
        members = self.web_members()
        self.web_hosts = [self._host(f"web-{i}", 1 + i, self.web.memory_mib, self.web.vcpus, key) for i in members]
        if self.autoscale is not None:
            self._declare_tier(self.autoscale, members)
        storage_address = self.host_address(1)
        store = make(
            Configuration, "storage", playbook=f"{PLAYBOOKS}/storage.yml", hosts=[self.storage_host],
            addresses=[storage_address], group="storage", key=key,
            vars={"pg_port": self.storage.port, "db_name": self.storage.database, "db_user": "app",
                  "data_dir": "/srv/data", "subnet": self.network.ipv4})
        dsn = f"host={storage_address} port={self.storage.port} dbname={self.storage.database} user=app " \
              "connect_timeout=3"
        agent = self._agent_vars()
        # the agents' key (derived from the project's, per domain) reaches the web role as a file's path at run time
        secrets = {"agent_key_file": agent_key_name(self.address)} if agent else {}
        for i, host in zip(members, self.web_hosts, strict=True):
            make(Configuration, f"web-{i}", playbook=f"{PLAYBOOKS}/web.yml", hosts=[host],
                 addresses=[self.host_address(1 + i)], group="web", key=key, depends_on=[store],
                 vars={"app_port": self.web.port, "dsn": dsn, **agent}, secrets=secrets)
        servers = [haproxy.Server(host.physical_name, self.host_address(1 + i), self.web.port)
                   for i, host in sorted(zip(members, self.web_hosts, strict=True), key=lambda m: m[0])]
        config = haproxy.render_haproxy(
            self.physical_name, bind=self.host_address(0), port=self.lb.port, balance=self.lb.balance,
            health_check=self.lb.health_check, servers=servers, runtime_socket=RUNTIME_SOCKET,
            state_file=STATE_FILE, stats_port=STATS_PORT)
        # the balancer's run waits for the web hosts, not for their runs: it adds a new server (in maintenance) at
        # once and lets it take requests when it answers its health check, while the server's own run sets it up;
        # a server it lets go (scale-in) is destroyed only once the run has drained it
        make(Configuration, "lb", playbook=f"{PLAYBOOKS}/lb.yml", hosts=[self.lb_host],
             addresses=[self.host_address(0)], group="lb", key=key, depends_on=self.web_hosts,
             files={"haproxy.cfg": config}, checks={"haproxy.cfg": ["haproxy", "-c", "-f", "{path}"]},
             vars={"haproxy_backend": haproxy.BACKEND, "haproxy_socket": RUNTIME_SOCKET,
                   "frontend_port": self.lb.port, "drain_timeout": self.lb.drain_timeout,
                   "ready_path": self.lb.health_check, "ready_timeout": SERVER_READY_TIMEOUT,
                   "servers": [{"name": s.name, "address": s.address, "port": s.port} for s in servers]})

    def scalable_tiers(self) -> list[ScalableTier]:
        """The web tier, when the domain is autoscaled (``ScalesTiers``: the loader collects it, the autoscaler reads
        it from the loaded stack)."""
        return list(getattr(self, "declared_tiers", []))

    def _declare_tier(self, policy: ScalingPolicy, members: list[int]) -> None:
        """Keep the web tier's declaration: it may be resized, and how."""
        hosts = tuple(TierHost(h.address, h.kind, h.physical_name, number, ip=self.host_address(1 + number))
                      for number, h in zip(members, self.web_hosts, strict=True))
        agent = policy.reads_agents
        self.declared_tiers.append(ScalableTier(
            address=self.address, setting=self.size_setting, members_setting=self.members_setting,
            size=self.web_size, declared=self.web.size,
            min=self.web.min, max=self.web.max, hosts=hosts, policy=policy.model_dump(), endpoint=self.endpoint,
            stats_url=f"http://{self.host_address(0)}:{STATS_PORT}/stats;csv",
            member_prefix=f"{self.address}/{self.web_hosts[0].kind}.web-" if self.web_hosts else "",
            agent_listen=self._network_host() if agent else None,
            agent_port=policy.agent_port if agent else None))

    def _network_host(self) -> str:
        """The host's own address on the domain's network (its subnet's first: libvirt's bridge), where the web
        servers' agents push to the autoscaler."""
        assert self.network.ipv4 is not None
        return str(ipaddress.ip_network(self.network.ipv4)[1])

    def _agent_vars(self) -> dict[str, Any]:
        """The web role's variables that install crane's agent beside the app (the policy reads the agents), or
        none."""
        if self.autoscale is None or not self.autoscale.reads_agents:
            return {}
        port = self.autoscale.agent_port
        return {"agent_port": port, "agent_push": f"http://{self._network_host()}:{port}/push"}

    def _host(self, name: str, index: int, memory_mib: int, vcpus: int, key: SshKey, *,
              data: bool = False) -> Resource:
        """One host of the domain: a container running sshd with the domain's key, or a VM from ``image`` or from
        ``template``; with ``data``, storage that outlives it (a directory volume mounted at /srv, or a second
        disk)."""
        if self.hosts == "container":
            mounts = {"/srv": make(Volume, f"{name}-data", pool=self.storage.pool, format="dir")} if data else {}
            pooled = self._pooled()
            host = make(Container, name, memory_mib=memory_mib, vcpus=vcpus, networks=[self.network],
                        ipv4=[self.network.lease() if pooled else self.host_address(index)], init=INIT,
                        init_env={"CRANE_INIT": init_script(), "CRANE_AUTHORIZED_KEY": key.public_key},
                        mounts=mounts)
            if pooled and isinstance(host, Container) and host.valid:
                self.leased_addresses[index] = host.ipv4[0]
            return host
        if self.template is not None:
            return self._template_vm(name, index, memory_mib, vcpus, data=data)
        assert self.image is not None and self.ssh_key is not None and self.network.ipv4 is not None
        public = Path(self.ssh_key).expanduser().with_suffix(".pub").read_text().strip()
        subnet = ipaddress.ip_network(self.network.ipv4)
        seed = make(CloudInit, f"{name}-seed", user_data={"ssh_authorized_keys": [public], "disable_root": False},
                    network_config={"version": 2, "ethernets": {"nic": {
                        "match": {"name": "e*"}, "addresses": [f"{self.host_address(index)}/{subnet.prefixlen}"],
                        "gateway4": str(subnet[1])}}})
        disks = [make(Volume, f"{name}-root", base=self.image, pool=self.image.pool, capacity_gib=8)]
        if data:
            disks.append(make(Volume, f"{name}-data", pool=self.image.pool, capacity_gib=8))
        return make(VM, name, vcpus=vcpus, memory_mib=memory_mib, networks=[self.network], volumes=disks,
                    cloud_init=seed)

    def _template_vm(self, name: str, index: int, memory_mib: int, vcpus: int, *, data: bool) -> Resource:
        """A VM made from ``template``, its NIC given the host's address (leased on a pool's network), its data on a
        second disk in ``storage.pool``."""
        pooled = self._pooled()
        disks = [make(Volume, f"{name}-data", pool=self.storage.pool, capacity_gib=8)] if data else []
        host = make(VM, name, vcpus=vcpus, memory_mib=memory_mib, networks=[self.network], volumes=disks,
                    template=self.template, nic_ipv4=[self.network.lease() if pooled else self.host_address(index)])
        if pooled and isinstance(host, VM) and host.valid and host.nic_ipv4[0] is not None:
            self.leased_addresses[index] = host.nic_ipv4[0]
        return host

    def properties(self) -> dict[str, Any]:
        return {}
