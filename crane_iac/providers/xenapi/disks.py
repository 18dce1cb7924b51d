"""Extra disks: a stack's ``Volume`` is a VDI (the ``volume`` kind), and each one a VM names in ``volumes`` is a VBD
of that VM.

A VDI is made empty (``VDI.create``, ``capacity_gib`` GiB, type user) in the SR the volume's ``pool`` names, or for
``pool="default"`` in the endpoint's ``default_sr``, else the pool's default SR. Its other_config carries crane's
owner keys and the pool name as the stack gave it (``crane/pool``), written with the VDI in one call, so a crash
leaves nothing unowned. It grows in place (``VDI.resize``) and never shrinks (a smaller one is a new VDI); delete
unplugs and destroys its VBDs, then the VDI.

A VDI replaced while VMs hold it (a smaller one, or one in another SR) is attached again to them: its delete notes
the VMs and userdevices in the pool's other_config (``crane/reattach:<pool>/<name>``, written before any VBD goes,
so a crash keeps it), and the create of the same volume attaches the new VDI there (hot-plugged on a running VM)
and removes the note. The planner sees no change of those VMs' ``disks``: the same volume.

A VBD crane attaches carries ``crane/disk`` in its other_config (the ``pool/volume`` it attaches, as a VM's
``disks`` name them): a VM's ``disks`` as read are those VBDs' VDIs, ordered by userdevice; the disks its template
gave it are the VM's own, listed nowhere and destroyed with it. On a running VM a disk is hot-plugged
(``VBD.plug``) and unplugged (``VBD.unplug``), which needs the guest's PV drivers.

Listed as volumes (``read_all``): every VDI crane owns, and every other user VDI that no VM holds by a VBD crane did
not make (the disks of templates and of VMs' own are theirs, not volumes a stack could declare or import)."""

from __future__ import annotations

import json
import logging
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.xenapi.records import Snapshot, owner_config, owner_of
from crane_iac.providers.xenapi.session import Connection, XenApiError
from crane_iac.providers.xenapi.tasks import Tasks

log = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
GIB = 1024 ** 3
#: in a VDI's other_config: the pool (an SR's name_label, or "default") its volume names
POOL_KEY = "crane/pool"
#: in a VBD's other_config: crane attached it, for the volume ``pool/name``
DISK_KEY = "crane/disk"
#: in the pool's other_config: the VMs a replaced volume is attached to again (``REATTACH_PREFIX + "pool/name"``)
REATTACH_PREFIX = "crane/reattach:"
#: the stack's name for the endpoint's default SR
DEFAULT_POOL = "default"
#: what crane's model calls a disk whose on-disk format the SR decides (VHD, or QCOW2 on XCP-ng 8.3)
FORMAT = "qcow2"


def pool_name(vdi: dict[str, Any], snap: Snapshot) -> str:
    """The volume's pool: as the stack gave it (crane's record), else the name of the VDI's SR."""
    recorded = (vdi.get("other_config") or {}).get(POOL_KEY)
    if recorded:
        return str(recorded)
    sr = snap.of("SR").get(vdi.get("SR", NULL)) or {}
    return str(sr.get("name_label") or "")


def reference(vdi: dict[str, Any], snap: Snapshot) -> str:
    """``pool/name``: how a VM's ``disks`` name the volume."""
    return f"{pool_name(vdi, snap)}/{vdi['name_label']}"


def volume_live(ref: str, snap: Snapshot) -> Live:
    vdi = snap.of("VDI")[ref]
    props = {"capacity_gib": int(vdi["virtual_size"]) // GIB, "pool": pool_name(vdi, snap), "format": FORMAT,
             "base": None, "source": None, "clone": None}
    owner = owner_of(vdi)
    return Live("volume", vdi["name_label"], props, {"uuid": vdi["uuid"]},
                owner.stack if owner else None, owner.address if owner else None)


def is_volume(vdi: dict[str, Any], snap: Snapshot) -> bool:
    """A VDI crane owns, or a user VDI that no VM holds by a VBD of its own (a template's or a VM's own disk)."""
    if vdi.get("is_a_snapshot"):
        return False
    if owner_of(vdi) is not None:
        return True
    if vdi.get("type") != "user":
        return False
    vbds = snap.of("VBD")
    return all(DISK_KEY in (vbds.get(r) or {}).get("other_config", {}) for r in vdi.get("VBDs", ()))


def volume_lives(snap: Snapshot) -> list[Live]:
    return [volume_live(ref, snap) for ref, vdi in snap.of("VDI").items() if is_volume(vdi, snap)]


def vm_disks(vm: dict[str, Any], snap: Snapshot) -> list[str]:
    """The volumes crane attached to ``vm`` (``pool/name``), by userdevice."""
    found = []
    for ref in vm.get("VBDs", ()):
        vbd = snap.of("VBD").get(ref)
        if vbd is None or DISK_KEY not in (vbd.get("other_config") or {}):
            continue
        vdi = snap.of("VDI").get(vbd["VDI"])
        if vdi is not None:
            found.append((int(vbd["userdevice"]) if str(vbd["userdevice"]).isdigit() else 99, reference(vdi, snap)))
    return [name for _, name in sorted(found)]


def vm_snapshot(conn: Connection, vm: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The VBDs, VDIs and SRs ``vm_disks`` needs for one VM (a few calls, not the pool's)."""
    vbds = {r: conn.call("VBD.get_record", r) for r in vm["VBDs"]}
    vdis = {v["VDI"]: conn.call("VDI.get_record", v["VDI"]) for v in vbds.values()
            if v["VDI"] != NULL and DISK_KEY in (v.get("other_config") or {})}
    srs = {v["SR"]: conn.call("SR.get_record", v["SR"]) for v in vdis.values()}
    return {"VBD": vbds, "VDI": vdis, "SR": srs}


class Disks:
    """The ``volume`` kind, and the VBDs that attach volumes to VMs."""

    def __init__(self, conn: Connection, tasks: Tasks, *, default_sr: str | None) -> None:
        self.conn, self.tasks, self.default_sr = conn, tasks, default_sr

    # lookups

    def sr(self, pool: str) -> str:
        """The SR a volume's ``pool`` names."""
        if pool == DEFAULT_POOL:
            if self.default_sr is not None:
                return self.sr(self.default_sr)
            default = self.conn.call("pool.get_default_SR", self.conn.call("pool.get_all")[0])
            if default == NULL:
                raise ProviderError("the pool has no default SR: set default_sr in crane.toml, or give the volume "
                                    "pool=<an SR's name>")
            return str(default)
        found = self.conn.call("SR.get_by_name_label", pool)
        if not found:
            raise ProviderError(f"the SR {pool!r} is not in the pool (the volume's pool names it)")
        return str(found[0])

    def find(self, physical: str, pool: str) -> str | None:
        """The VDI of the volume ``pool/physical``: one crane recorded under that pool, else an unowned one by that
        name in the SR the pool names."""
        refs = self.conn.call("VDI.get_by_name_label", physical)
        records = {ref: self.conn.call("VDI.get_record", ref) for ref in refs}
        for ref, vdi in records.items():
            if (vdi.get("other_config") or {}).get(POOL_KEY) == pool:
                return str(ref)
        unowned = [ref for ref, vdi in records.items() if POOL_KEY not in (vdi.get("other_config") or {})]
        if unowned:
            sr = self.sr(pool)
            for ref in unowned:
                if records[ref]["SR"] == sr:
                    return str(ref)
        return None

    def _read(self, ref: str) -> Live:
        vdi = self.conn.call("VDI.get_record", ref)
        return volume_live(ref, Snapshot({"VDI": {ref: vdi}, "SR": {vdi["SR"]: self.conn.call("SR.get_record",
                                                                                                vdi["SR"])}}))

    # the kind

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        sr = self.sr(p["pool"])
        ref = self.conn.call("VDI.create", {
            "name_label": physical, "name_description": "", "SR": sr, "virtual_size": str(p["capacity_gib"] * GIB),
            "type": "user", "sharable": False, "read_only": False,
            "other_config": {**owner_config(owner), POOL_KEY: p["pool"]}, "sm_config": {}, "xenstore_data": {},
            "tags": []})
        self._reattach(ref, f"{p['pool']}/{physical}")
        return self._read(ref)

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        ref = self.find(physical, p["pool"])
        return None if ref is None else self._read(ref)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        """Grow the VDI (the only change the rules let happen in place)."""
        ref = self.find(physical, after["pool"])
        if ref is None:
            raise ProviderError(f"volume {after['pool']}/{physical} is not in the pool")
        self.tasks.run("VDI.resize", ref, str(after["capacity_gib"] * GIB), what=physical)
        return self._read(ref)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        ref = self.find(physical, p["pool"])
        if ref is None:
            return
        vbds = {r: self.conn.call("VBD.get_record", r) for r in self.conn.call("VDI.get_VBDs", ref)}
        holders = [{"vm": self.conn.call("VM.get_uuid", vbd["VM"]), "userdevice": vbd["userdevice"]}
                   for vbd in vbds.values() if DISK_KEY in (vbd.get("other_config") or {})]
        if holders:
            self._note(f"{p['pool']}/{physical}", json.dumps(holders))
        for vbd in vbds:
            self._unattach(vbd, physical)
        self.conn.call("VDI.destroy", ref)

    # a VM's disks

    def attach(self, vm: str, disks: list[str], *, running: bool, what: str) -> None:
        """Attach each volume of ``disks`` (``pool/name``) that ``vm`` lacks, at the lowest free userdevice from 1
        (0 is the template's root disk); hot-plugged on a running VM."""
        vbds = {ref: self.conn.call("VBD.get_record", ref) for ref in self.conn.call("VM.get_VBDs", vm)}
        have = {rec["other_config"].get(DISK_KEY) for rec in vbds.values()}
        used = {str(rec["userdevice"]) for rec in vbds.values()}
        for disk in disks:
            if disk in have:
                continue
            pool, _, name = disk.partition("/")
            vdi = self.find(name, pool)
            if vdi is None:
                raise ProviderError(f"{what}: its volume {disk} is not in the pool")
            device = next(str(n) for n in range(1, 1000) if str(n) not in used)
            used.add(device)
            self._vbd(vm, vdi, device, disk, running=running, what=what)

    def _vbd(self, vm: str, vdi: str, device: str, disk: str, *, running: bool, what: str) -> None:
        vbd = self.conn.call("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": device, "bootable": False, "mode": "RW", "type": "Disk",
            "empty": False, "unpluggable": True, "other_config": {DISK_KEY: disk},
            "qos_algorithm_type": "", "qos_algorithm_params": {}})
        if running:
            self.tasks.run("VBD.plug", vbd, what=what)

    def _xen_pool(self) -> str:
        return str(self.conn.call("pool.get_all")[0])

    def _note(self, disk: str, value: str | None) -> None:
        """Write (or with None remove) the note of the VMs a replaced volume is attached to again."""
        pool = self._xen_pool()
        self.conn.call("pool.remove_from_other_config", pool, REATTACH_PREFIX + disk)
        if value is not None:
            self.conn.call("pool.add_to_other_config", pool, REATTACH_PREFIX + disk, value)

    def _reattach(self, vdi: str, disk: str) -> None:
        """Attach a volume made again to the VMs its delete noted (those still there, the userdevice still free)."""
        note = self.conn.call("pool.get_other_config", self._xen_pool()).get(REATTACH_PREFIX + disk)
        if note is None:
            return
        for holder in json.loads(note):
            try:
                vm = self.conn.call("VM.get_by_uuid", holder["vm"])
            except XenApiError as exc:
                if exc.code not in ("UUID_INVALID", "HANDLE_INVALID"):
                    raise
                continue  # the VM went too
            used = {str(self.conn.call("VBD.get_userdevice", r)) for r in self.conn.call("VM.get_VBDs", vm)}
            device = str(holder["userdevice"])
            if device not in used:
                log.info("%s: attaching it again to %s", disk, holder["vm"])
                running = self.conn.call("VM.get_power_state", vm) == "Running"
                self._vbd(vm, vdi, device, disk, running=running, what=disk)
        self._note(disk, None)

    def detach(self, vm: str, keep: list[str], *, what: str) -> None:
        """Unplug and destroy the VBDs crane attached to ``vm`` whose volume is not in ``keep`` (the VDI stays)."""
        for ref in self.conn.call("VM.get_VBDs", vm):
            disk = self.conn.call("VBD.get_other_config", ref).get(DISK_KEY)
            if disk is not None and disk not in keep:
                self._unattach(ref, what)

    def _unattach(self, vbd: str, what: str) -> None:
        try:
            if self.conn.call("VBD.get_currently_attached", vbd):
                self.tasks.run("VBD.unplug", vbd, what=what)
            self.conn.call("VBD.destroy", vbd)
        except XenApiError as exc:
            if exc.code != "HANDLE_INVALID":
                raise

