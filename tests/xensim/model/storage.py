"""SRs, VDIs and VBDs.

An SR has a size; every VDI in it uses its ``virtual_size`` (``physical_utilisation`` and ``virtual_allocation``
are their sum), and a VDI that would not fit is ``SR_FULL``. ``VDI.destroy`` of a disk attached to a running VM is
``VDI_IN_USE``; otherwise the VDI's VBDs go with it. ``VM.destroy`` leaves a VM's VDIs behind, as xapi does.
``VBD.create`` checks the ``userdevice`` is free on the VM (``DEVICE_ALREADY_EXISTS``). ``VDI.resize`` grows a VDI
within its SR's free space (``SR_FULL``) and refuses to shrink one (``SR_OPERATION_NOT_SUPPORTED``, as the SM
backends do); ``VBD.plug``/``VBD.unplug`` hot-plug a disk of a running VM (as its PV drivers would take it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.xensim.errors import XenError
from tests.xensim.registry import message
from tests.xensim.spec import NULL_REF, decode_create_record

if TYPE_CHECKING:
    from tests.xensim.world import World

GIB = 1024 ** 3


def build(w: World) -> None:
    for index, sr in enumerate(w.config.sr_specs()):
        ref = w.store.create("SR", name_label=sr.name, type=sr.type, content_type="user",
                             physical_size=sr.size_gib * GIB, shared=False, sm_config={"devserial": f"sr{index}"})
        if index == 0:
            pool = w.store.get("pool", w.pool)
            pool["default_SR"] = pool["suspend_image_SR"] = pool["crash_dump_SR"] = ref


def add_vdi(w: World, sr: str, name: str, size: int, **values: Any) -> str:
    record = w.store.get("SR", sr)
    free = record["physical_size"] - record["physical_utilisation"]
    if size > free:
        raise XenError("SR_FULL", size, free)
    values.setdefault("type", "user")
    ref = w.store.create("VDI", SR=sr, name_label=name, virtual_size=size, physical_utilisation=size, **values)
    record["physical_utilisation"] += size
    record["virtual_allocation"] += size
    w.store.link("SR", sr, "VDIs", ref)
    return ref


def add_vbd(w: World, vm: str, vdi: str, userdevice: str, **values: Any) -> str:
    for vbd in w.store.get("VM", vm)["VBDs"]:
        if w.store.get("VBD", vbd)["userdevice"] == userdevice:
            raise XenError("DEVICE_ALREADY_EXISTS", userdevice)
    values.setdefault("mode", "RW")
    values.setdefault("type", "Disk")
    ref = w.store.create("VBD", VM=vm, VDI=vdi, userdevice=userdevice, empty=vdi == NULL_REF, **values)
    w.store.link("VM", vm, "VBDs", ref)
    if vdi != NULL_REF:
        w.store.link("VDI", vdi, "VBDs", ref)
    return ref


def drop_vbd(w: World, ref: str) -> None:
    vbd = w.store.destroy("VBD", ref)
    w.store.unlink("VM", vbd["VM"], "VBDs", ref)
    if vbd["VDI"] != NULL_REF:
        w.store.unlink("VDI", vbd["VDI"], "VBDs", ref)


@message("VDI.create", asyncable=True)
def vdi_create(w: World, session: str, args: dict[str, Any]) -> str:
    values = decode_create_record("VDI", args)
    w.store.get("SR", values["SR"])
    sr, size = values.pop("SR"), values.pop("virtual_size")
    return add_vdi(w, sr, values.pop("name_label", ""), size, **values)


@message("VDI.destroy", asyncable=True)
def vdi_destroy(w: World, session: str, ref: str) -> None:
    vdi = w.store.get("VDI", ref)
    for vbd in vdi["VBDs"]:
        if w.store.get("VBD", vbd)["currently_attached"]:
            raise XenError("VDI_IN_USE", ref, "destroy")
    for vbd in list(vdi["VBDs"]):
        drop_vbd(w, vbd)
    w.store.destroy("VDI", ref)
    sr = w.store.get("SR", vdi["SR"])
    sr["physical_utilisation"] -= vdi["virtual_size"]
    sr["virtual_allocation"] -= vdi["virtual_size"]
    w.store.unlink("SR", vdi["SR"], "VDIs", ref)


@message("VBD.create", asyncable=True, nullable=("VDI",))
def vbd_create(w: World, session: str, args: dict[str, Any]) -> str:
    values = decode_create_record("VBD", args)
    w.store.get("VM", values["VM"])
    if values["VDI"] != NULL_REF:
        w.store.get("VDI", values["VDI"])
    values.pop("empty")
    vm, vdi, userdevice = values.pop("VM"), values.pop("VDI"), values.pop("userdevice")
    return add_vbd(w, vm, vdi, userdevice, **values)


@message("VBD.destroy", asyncable=True)
def vbd_destroy(w: World, session: str, ref: str) -> None:
    if w.store.get("VBD", ref)["currently_attached"]:
        raise XenError("OPERATION_NOT_ALLOWED", "VBD is attached: unplug it or halt the VM first")
    drop_vbd(w, ref)


@message("VDI.resize", asyncable=True)
def vdi_resize(w: World, session: str, ref: str, size: int) -> None:
    vdi = w.store.get("VDI", ref)
    grow = int(size) - vdi["virtual_size"]
    if grow < 0:
        raise XenError("SR_OPERATION_NOT_SUPPORTED", vdi["SR"])
    sr = w.store.get("SR", vdi["SR"])
    free = sr["physical_size"] - sr["physical_utilisation"]
    if grow > free:
        raise XenError("SR_FULL", str(grow), str(free))
    vdi["virtual_size"] = vdi["physical_utilisation"] = int(size)
    sr["physical_utilisation"] += grow
    sr["virtual_allocation"] += grow


@message("VBD.plug", asyncable=True)
def vbd_plug(w: World, session: str, ref: str) -> None:
    vbd = w.store.get("VBD", ref)
    state = str(w.store.get("VM", vbd["VM"])["power_state"])
    if state != "Running":
        raise XenError("VM_BAD_POWER_STATE", vbd["VM"], "running", state.lower())
    if vbd["currently_attached"]:
        raise XenError("DEVICE_ALREADY_ATTACHED", ref)
    vbd["currently_attached"] = True


@message("VBD.unplug", asyncable=True)
def vbd_unplug(w: World, session: str, ref: str) -> None:
    vbd = w.store.get("VBD", ref)
    if not vbd["currently_attached"]:
        raise XenError("DEVICE_ALREADY_DETACHED", ref)
    vbd["currently_attached"] = False
