"""New VMs from old ones: ``VM.clone`` (same SRs, copy-on-write: no space used), ``VM.copy`` (full copies of the
disks into the SR given, or each disk's own SR when that is ``OpaqueRef:NULL``; ``SR_FULL`` when they do not fit)
and ``VM.provision`` (the disks a template describes in ``other_config["disks"]`` created, in the SR named there by
uuid or the pool's default SR, and the key removed).

Both clone and copy need a Halted source (``VM_BAD_POWER_STATE``); the new VM is Halted, keeps
``is_a_template`` (a clone of a template is a template until ``VM.set_is_a_template(false)``), is never a
default template, and gets new VIFs with new MACs on the same networks.
"""

from __future__ import annotations

import copy as copying
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from tests.xensim.errors import XenError
from tests.xensim.model.network import add_vif
from tests.xensim.model.storage import add_vbd, add_vdi
from tests.xensim.model.vms import add_vm
from tests.xensim.registry import message
from tests.xensim.spec import NULL_REF, now_stamp

if TYPE_CHECKING:
    from tests.xensim.world import World

#: What a new VM does not take from its source: identity, links, and runtime state.
FRESH = {"uuid", "name_label", "VIFs", "VBDs", "metrics", "guest_metrics", "resident_on", "power_state", "domid",
         "is_default_template", "current_operations", "allowed_operations", "consoles", "crash_dumps", "VTPMs",
         "VUSBs", "VGPUs", "attached_PCIs", "snapshots", "children", "parent", "is_control_domain"}


def _source(w: World, vm: str) -> dict[str, Any]:
    record = w.store.get("VM", vm)
    if record["is_control_domain"]:
        raise XenError("OPERATION_NOT_ALLOWED", "the control domain")
    if record["power_state"] != "Halted":
        raise XenError("VM_BAD_POWER_STATE", vm, "halted", record["power_state"].lower())
    return record


def _duplicate(w: World, vm: str, name: str, sr: str | None) -> str:
    source = _source(w, vm)
    values = {k: copying.deepcopy(v) for k, v in source.items() if k not in FRESH}
    disks = []
    for vbd in source["VBDs"]:
        record = w.store.get("VBD", vbd)
        vdi = w.store.get("VDI", record["VDI"]) if record["VDI"] != NULL_REF else None
        disks.append((record, vdi))
    if sr is not None:  # a full copy: check the space first, so a copy that fails leaves nothing behind
        needs: dict[str, int] = {}
        for _, vdi in disks:
            if vdi is not None:
                target = sr or vdi["SR"]
                needs[target] = needs.get(target, 0) + vdi["virtual_size"]
        for target, size in needs.items():
            record = w.store.get("SR", target)
            free = record["physical_size"] - record["physical_utilisation"]
            if size > free:
                raise XenError("SR_FULL", size, free)
    ref = add_vm(w, name, **values)
    for vbd, vdi in disks:
        new_vdi = NULL_REF
        if vdi is not None:
            target = (sr or vdi["SR"]) if sr is not None else vdi["SR"]
            size = vdi["virtual_size"] if sr is not None else 0  # a clone shares the blocks
            new_vdi = add_vdi(w, target, vdi["name_label"], size, type=vdi["type"],
                              other_config=dict(vdi["other_config"]))
            w.store.get("VDI", new_vdi)["virtual_size"] = vdi["virtual_size"]
        add_vbd(w, ref, new_vdi, vbd["userdevice"], bootable=vbd["bootable"], mode=vbd["mode"], type=vbd["type"])
    for vif in w.store.get("VM", vm)["VIFs"]:
        record = w.store.get("VIF", vif)
        add_vif(w, ref, record["network"], record["device"], "", MTU=record["MTU"],
                other_config=dict(record["other_config"]))
    return ref


@message("VM.clone", asyncable=True)
def clone(w: World, session: str, vm: str, new_name: str) -> str:
    return _duplicate(w, vm, new_name, None)


@message("VM.copy", asyncable=True, nullable=("sr",))
def copy(w: World, session: str, vm: str, new_name: str, sr: str) -> str:
    return _duplicate(w, vm, new_name, "" if sr == NULL_REF else sr)


def _disks(text: str) -> list[dict[str, str]]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise XenError("INTERNAL_ERROR", f"other_config:disks is not valid XML: {e}") from e
    return [dict(d.attrib) for d in root.iter("disk")]


@message("VM.provision", asyncable=True)
def provision(w: World, session: str, vm: str) -> None:
    record = _source(w, vm)
    spec = record["other_config"].get("disks")
    if spec is None:
        return
    default_sr = w.store.get("pool", w.pool)["default_SR"]
    plan = []
    for disk in _disks(spec):
        sr = w.store.by_uuid("SR", disk["sr"]) if disk.get("sr") else default_sr
        plan.append((sr, disk))
    needs: dict[str, int] = {}
    for sr, disk in plan:
        needs[sr] = needs.get(sr, 0) + int(disk["size"])
    for sr, size in needs.items():
        sr_record = w.store.get("SR", sr)
        if size > sr_record["physical_size"] - sr_record["physical_utilisation"]:
            raise XenError("SR_FULL", size, sr_record["physical_size"] - sr_record["physical_utilisation"])
    for sr, disk in plan:
        vdi = add_vdi(w, sr, f"{record['name_label']} {disk['device']}", int(disk["size"]), type=disk["type"],
                      other_config={"provisioned": now_stamp()})
        add_vbd(w, vm, vdi, disk["device"], bootable=disk.get("bootable") == "true")
    del record["other_config"]["disks"]
