"""libvirt XML: render crane's properties into domain (VM and container), network and volume XML, and parse them
back."""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from functools import cache
from typing import TYPE_CHECKING, Any

from crane_iac.objects import Owner
from crane_iac.templates.library import DISK_IMAGE, LIBRARY_POOL

OWNER_NS = "https://crane-iac.dev/xmlns/owner/1"
_OWNER_TAG = f"{{{OWNER_NS}}}owner"
#: a domain's cloud-init seed: which volume, and the digest of the contents it was defined with
SEED_NS = "https://crane-iac.dev/xmlns/cloud-init/1"
_SEED_TAG = f"{{{SEED_NS}}}cloud-init"
#: a container on a template: which template, over which root (libvirt keeps one metadata element per namespace)
TEMPLATE_NS = "https://crane-iac.dev/xmlns/template/1"
_TEMPLATE_TAG = f"{{{TEMPLATE_NS}}}template"
_AUTO_BRIDGE = re.compile(r"^virbr\d+$")

if TYPE_CHECKING:
    import jinja2


@cache
def _templates() -> jinja2.Environment:
    import jinja2  # only runs that create something render XML; a plan never does

    return jinja2.Environment(
        loader=jinja2.PackageLoader("crane_iac.providers.libvirt", "templates"),
        auto_reload=False,
        # values are validated names and numbers; free text (description, owner) is escaped with |e
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def seed_of(p: dict[str, Any]) -> dict[str, str] | None:
    """A VM's ``cloud_init`` property (``pool/volume@digest``) as the template wants it, or None."""
    ref = p.get("cloud_init")
    if not ref:
        return None
    volume, _, digest = ref.partition("@")
    pool, _, name = volume.partition("/")
    return {"pool": pool, "volume": name, "digest": digest}


def render_domain(name: str, p: dict[str, Any], owner: Owner, *, domain_type: str, disks: list[dict[str, str]],
                  stats_period: int, uuid: str | None = None) -> str:
    """Domain XML; with ``uuid``, a new definition of that existing domain."""
    return _templates().get_template("domain.xml.j2").render(
        name=name, p=p, owner={"stack": owner.stack, "address": owner.address}, ns=OWNER_NS,
        domain_type=domain_type, disks=disks, stats_period=stats_period, uuid=uuid, seed=seed_of(p),
        seed_ns=SEED_NS)


#: a container's CPU quota period (µs): its ``vcpus`` are enforced as a quota of ``vcpus`` periods per period over
#: the whole container (the LXC driver sets the container's cgroup's CFS quota), so a container may use no more CPU
#: time than its ``vcpus``, and its agent's CPU reading is a fraction of that. Not read back into the properties: a
#: container defined before the quota was written (crane before issue 19) is not drift, and gets it at its next
#: definition (any change that restarts it, or ``crane apply --replace``)
CPU_PERIOD_US = 100_000


def render_container(name: str, p: dict[str, Any], owner: Owner, *, domain_type: str, mount_dirs: dict[str, str],
                     uuid: str | None = None, root_dir: str | None = None) -> str:
    """Container (``<os><type>exe``) domain XML; ``mount_dirs``: each mount point's host directory; ``root_dir``
    the directory passed as its root when it is not ``p['root']`` (a template's overlay, named in the metadata). The
    tmpfs and mounts go in order of their paths, so that a parent is mounted before what lies in it."""
    filesystems = sorted([{"target": path, "dir": None} for path in p["writable"]]
                         + [{"target": path, "dir": mount_dirs[path]} for path in p["mounts"]],
                         key=lambda fs: str(fs["target"]))
    return _templates().get_template("container.xml.j2").render(
        name=name, p=p, owner={"stack": owner.stack, "address": owner.address}, ns=OWNER_NS, domain_type=domain_type,
        filesystems=filesystems, uuid=uuid, cpu_period=CPU_PERIOD_US, root_dir=root_dir or p["root"],
        template_ns=TEMPLATE_NS)


def _ip_blocks(p: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = []
    for family in ("ipv4", "ipv6"):
        if not p.get(family):
            continue
        net = ipaddress.ip_network(p[family])
        base = int(net.network_address)
        if family == "ipv4" and family in p.get("leases", ()) and net.num_addresses >= 8:
            # the lower half is leased to hosts (ippools.network_pool): DHCP serves the upper half
            first, last = base + net.num_addresses // 2, int(net.broadcast_address) - 1
        elif family == "ipv4":  # hosts .2 up to the one before broadcast
            first, last = base + 2, int(net.broadcast_address) - 1
        elif family in p.get("leases", ()):  # a pool's /64: router advertisements for SLAAC (libvirt's dnsmasq
            first, last = 1, 0                # sends them with the A flag when the subnet has no DHCPv6 range)
        else:  # ::100 to ::1ff, a slice DHCPv6 serves while the rest stays for static use
            first, last = base + 0x100, base + 0x1FF
        blocks.append({"family": family, "gateway": str(net.network_address + 1), "prefix": net.prefixlen,
                       "dhcp": p.get("dhcp", True) and first <= last,
                       "start": str(ipaddress.ip_address(first) if family == "ipv4" else ipaddress.IPv6Address(first)),
                       "end": str(ipaddress.ip_address(last) if family == "ipv4" else ipaddress.IPv6Address(last))})
    return blocks


def render_network(name: str, p: dict[str, Any], owner: Owner) -> str:
    return _templates().get_template("network.xml.j2").render(
        name=name, p=p, owner={"stack": owner.stack, "address": owner.address}, ns=OWNER_NS,
        ips=_ip_blocks(p))


def render_volume(name: str, capacity: int, fmt: str, base_path: str | None = None, base_format: str = "raw",
                  mode: str | None = None) -> str:
    """Volume XML: ``capacity`` in bytes, ``fmt`` the format of the volume, ``base_path`` its backing file, ``mode``
    its permissions (octal)."""
    return _templates().get_template("volume.xml.j2").render(
        name=name, capacity=capacity, format=fmt, base_path=base_path, base_format=base_format, mode=mode)


def render_pool(name: str, p: dict[str, Any]) -> str:
    return _templates().get_template("pool.xml.j2").render(name=name, p=p)


def parse_pool(root: ET.Element) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pool XML → (StoragePool properties, outputs)."""
    return ({"name": root.findtext("name"), "type": root.get("type"), "path": root.findtext("target/path")},
            {"uuid": root.findtext("uuid")})


def owner_of(root: ET.Element) -> Owner | None:
    meta = root.find("metadata")
    if meta is None:
        return None
    tag = meta.find(_OWNER_TAG)
    if tag is None:
        return None
    return Owner(tag.get("stack", ""), tag.get("address", ""))


#: a memory element's unit → KiB
_KIB_PER_UNIT = {"b": 1 / 1024, "bytes": 1 / 1024, "KiB": 1, "k": 1, "MiB": 1024, "M": 1024, "GiB": 1024**2,
                 "G": 1024**2}


def _kib(elem: ET.Element | None) -> int:
    if elem is None or elem.text is None:
        return 0
    return int(int(elem.text) * _KIB_PER_UNIT.get(elem.get("unit", "KiB"), 1))


def parse_domain(root: ET.Element, *, running: bool, autostart: bool,
                 volume_by_path: dict[str, str]) -> dict[str, Any]:
    """Domain XML → VM properties (memory in MiB, disks as ``pool/volume``). Children are looked up by tag alone,
    which ElementTree does in C; a path (``os/kernel``) or ``iterfind`` goes through its XPath, in Python."""
    vcpu = root.find("vcpu")
    max_vcpus = int(vcpu.text or 1) if vcpu is not None else 1
    nics = []
    disks = []
    seed = None
    devices = root.find("devices")
    if devices is not None:
        for iface in devices.findall("interface"):
            source, mac = iface.find("source"), iface.find("mac")
            nics.append({"network": source.get("network") if source is not None else None,
                         "mac": mac.get("address") if mac is not None else None})
        for disk in devices.findall("disk"):
            source = disk.find("source")
            if source is not None and disk.get("device") == "cdrom" and source.get("pool"):
                seed = f"{source.get('pool')}/{source.get('volume')}"
            if source is None or disk.get("device", "disk") != "disk":
                continue
            if source.get("pool"):
                disks.append(f"{source.get('pool')}/{source.get('volume')}")
            else:
                path = source.get("file") or source.get("dev") or ""
                disks.append(volume_by_path.get(path, path))
    max_memory_mib = _kib(root.find("memory")) // 1024
    boot = root.find("os")
    return {
        "vcpus": int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1,
        "max_vcpus": max_vcpus,
        "memory_mib": _kib(root.find("currentMemory")) // 1024 or max_memory_mib,
        "max_memory_mib": max_memory_mib,
        "nics": nics,
        "disks": disks,
        "running": running,
        "autostart": autostart,
        "description": root.findtext("description"),
        "kernel": boot.findtext("kernel") if boot is not None else None,
        "initrd": boot.findtext("initrd") if boot is not None else None,
        "cmdline": boot.findtext("cmdline") if boot is not None else None,
        "cloud_init": _seed_reference(root, seed),
    }


def is_container(root: ET.Element) -> bool:
    """Whether domain XML is a container's (an ``exe`` domain: a program to run, not a machine to boot)."""
    boot = root.find("os")
    return boot is not None and (boot.findtext("type") or "").strip() == "exe"


def parse_container(root: ET.Element, *, running: bool, autostart: bool,
                    volume_by_path: dict[str, str]) -> dict[str, Any]:
    """Container domain XML → Container properties (mounts as ``pool/volume`` where ``volume_by_path`` knows the
    directory, else the directory itself)."""
    boot = root.find("os")
    init: list[str] = []
    env: dict[str, str] = {}
    if boot is not None:
        init = [boot.findtext("init") or ""] + [arg.text or "" for arg in boot.findall("initarg")]
        env = {var.get("name", ""): var.text or "" for var in boot.findall("initenv")}
    vcpu = root.find("vcpu")
    nics = []
    root_dir = None
    writable = []
    mounts = {}
    devices = root.find("devices")
    if devices is not None:
        for fs in devices.findall("filesystem"):
            source, target = fs.find("source"), fs.find("target")
            path = target.get("dir", "") if target is not None else ""
            if fs.get("type") == "ram":
                writable.append(path)
            elif fs.get("type", "mount") == "mount" and source is not None:
                if path == "/":
                    root_dir = source.get("dir")
                else:
                    directory = source.get("dir", "")
                    mounts[path] = volume_by_path.get(directory, directory)
        for iface in devices.findall("interface"):
            source, mac, target = iface.find("source"), iface.find("mac"), iface.find("target")
            ips = {el.get("family", "ipv4"): el for el in iface.findall("ip")}
            routes = {el.get("family", "ipv4"): el for el in iface.findall("route")}
            ip, route = ips.get("ipv4"), routes.get("ipv4")
            nic = {"network": source.get("network") if source is not None else None,
                   "mac": mac.get("address") if mac is not None else None,
                   "ipv4": ip.get("address") if ip is not None else None,
                   "prefix": int(ip.get("prefix", 0)) if ip is not None else None,
                   "gateway": route.get("gateway") if route is not None else None,
                   "device": target.get("dev") if target is not None else None}
            ip6, route6 = ips.get("ipv6"), routes.get("ipv6")
            if ip6 is not None:  # the keys only a NIC with an IPv6 address has (resources/container.py)
                nic.update(ipv6=ip6.get("address"), ipv6_prefix=int(ip6.get("prefix", 0)),
                           ipv6_gateway=route6.get("gateway") if route6 is not None else None)
            nics.append(nic)
    template = root.find(f"metadata/{_TEMPLATE_TAG}")
    if template is not None:  # its root is the template's overlay: the stack's root is the one below it
        root_dir = template.get("base", root_dir)
    return {
        **({"template": template.get("name")} if template is not None else {}),
        "vcpus": int(vcpu.text or 1) if vcpu is not None else 1,
        "memory_mib": _kib(root.find("memory")) // 1024,
        "nics": nics,
        "init": init,
        "init_env": env,
        "root": root_dir,
        "writable": sorted(writable),
        "mounts": mounts,
        "running": running,
        "autostart": autostart,
    }


def _seed_reference(root: ET.Element, volume: str | None) -> str | None:
    """``pool/volume@digest`` of the seed CD-ROM; the digest is what the domain's metadata recorded for that volume."""
    if volume is None:
        return None
    tag = root.find(f"metadata/{_SEED_TAG}")
    digest = tag.get("digest", "") if tag is not None and tag.get("volume") == volume else ""
    return f"{volume}@{digest}"


def parse_network(root: ET.Element) -> tuple[dict[str, Any], dict[str, Any]]:
    """Network XML → (Network properties, outputs). An auto-assigned ``virbrN`` bridge is an output only."""
    forward = root.find("forward")
    fmode = forward.get("mode", "nat") if forward is not None else None
    virtualport = root.find("virtualport")
    if virtualport is not None and virtualport.get("type") == "openvswitch":
        mode = "openvswitch"
    elif fmode is None:
        mode = "isolated"
    else:
        mode = fmode
    bridge_el = root.find("bridge")
    bridge = bridge_el.get("name") if bridge_el is not None else None
    vlan = root.find("vlan")
    tags = [int(t.get("id", 0)) for t in vlan.iterfind("tag")] if vlan is not None else []
    props: dict[str, Any] = {"mode": mode, "bridge": None if bridge and _AUTO_BRIDGE.match(bridge) and
                             mode not in ("bridge", "openvswitch") else bridge,
                             "vlan": (sorted(tags) if vlan is not None and vlan.get("trunk") == "yes" else
                                      tags[0] if tags else None),
                             "ipv4": None, "ipv6": None, "dhcp": False}
    for ip in root.iterfind("ip"):
        family = ip.get("family", "ipv4")
        prefix = ip.get("prefix")
        if prefix is None and ip.get("netmask"):
            prefix = str(ipaddress.IPv4Network(f"0.0.0.0/{ip.get('netmask')}").prefixlen)
        net = ipaddress.ip_network(f"{ip.get('address')}/{prefix}", strict=False)
        props[family] = str(net)
        if ip.find("dhcp") is not None:
            props["dhcp"] = True
    if props["ipv4"] is None and props["ipv6"] is None:
        props["dhcp"] = True  # no subnet: nothing to serve, so the declared default stands
    return props, {"uuid": root.findtext("uuid"), "bridge_name": bridge}


def reservations(root: ET.Element) -> dict[str, str]:
    """A network's IPv4 DHCP host entries: MAC → reserved address."""
    return {host.get("mac", ""): host.get("ip", "") for ip in root.iterfind("ip")
            if ip.get("family", "ipv4") == "ipv4" for host in ip.iterfind("dhcp/host") if host.get("mac")}


def slaac_subnet(root: ET.Element) -> str | None:
    """The /64 a network announces for SLAAC: its IPv6 subnet when it has no DHCPv6 (libvirt's dnsmasq then sends
    router advertisements with the autonomous flag); None for a network without one."""
    for ip in root.iterfind("ip"):
        if ip.get("family") == "ipv6" and ip.get("prefix") == "64" and ip.find("dhcp") is None:
            return str(ipaddress.IPv6Network(f"{ip.get('address')}/64", strict=False))
    return None


def dhcp_range(root: ET.Element) -> tuple[int, int] | None:
    """The first IPv4 DHCP range of a network's XML, as integers, or None when it serves no IPv4 DHCP."""
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") != "ipv4":
            continue
        rng = ip.find("dhcp/range")
        if rng is not None and rng.get("start") and rng.get("end"):
            return int(ipaddress.IPv4Address(rng.get("start"))), int(ipaddress.IPv4Address(rng.get("end")))
    return None


def capacity_bytes(root: ET.Element) -> int:
    """A volume's capacity in bytes, from its XML."""
    capacity = root.find("capacity")
    size = int(capacity.text or 0) if capacity is not None else 0
    unit = capacity.get("unit", "bytes") if capacity is not None else "bytes"
    return size * {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}.get(unit, 1)


def parse_volume(root: ET.Element, pool: str, pool_by_dir: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    size_bytes = capacity_bytes(root)
    fmt = root.find("target/format")
    base_path = root.findtext("backingStore/path")
    base = template = None
    if base_path:
        directory, _, vol = base_path.rpartition("/")
        library, _, name = directory.rpartition("/")
        if vol == DISK_IMAGE and pool_by_dir.get(library) == LIBRARY_POOL:
            template = name  # backed by a VM template's disk in the library: Volume(template=name)
        else:
            base = f"{pool_by_dir[directory]}/{vol}" if directory in pool_by_dir else base_path
    fmt_name = fmt.get("type", "raw") if fmt is not None else "raw"
    props = {"capacity_gib": None if fmt_name == "dir" else -(-size_bytes // 1024**3), "pool": pool,
             # libvirt's probe calls a file holding an ISO 9660 image "iso": to crane (and QEMU) it is raw data
             "format": "raw" if fmt_name == "iso" else fmt_name, "base": base,
             **({"template": template} if template is not None else {})}
    return props, {"path": root.findtext("target/path") or root.findtext("key")}
