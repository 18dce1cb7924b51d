"""VMs: templates and control domains at build time, the power-state machine, memory and VCPU settings.

Power states: ``VM.start``/``start_on`` need a Halted VM that is not a template (``VM_BAD_POWER_STATE``,
``VM_IS_TEMPLATE``) and a host with the VM's ``memory_dynamic_max`` free (``HOST_NOT_ENOUGH_FREE_MEMORY``, with the
bytes needed and the most any host has); ``clean_shutdown`` needs Running, ``hard_shutdown`` Running or Paused;
``destroy`` needs Halted and leaves the VDIs. Memory: ``static_min <= dynamic_min <= dynamic_max <= static_max``
(``MEMORY_CONSTRAINT_VIOLATION``), the static range only while Halted; VCPUs: ``1 <= VCPUs_at_startup <=
VCPUs_max`` (``INVALID_VALUE``), both only while Halted. A running VM's balloon reaches its target at once:
``VM_metrics.memory_actual`` is ``memory_dynamic_max``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.xensim.config import HostSpec, TemplateSpec
from tests.xensim.errors import XenError
from tests.xensim.model import guests
from tests.xensim.model.host import free_memory
from tests.xensim.model.storage import add_vbd, add_vdi
from tests.xensim.registry import message
from tests.xensim.spec import NULL_REF, now_stamp

if TYPE_CHECKING:
    from tests.xensim.world import World

MIB = 1024 * 1024
DISKS = ('<provision><disk device="0" size="{size}" sr="" bootable="true" type="system" '
         'ionice_class="0" ionice_value="0"/></provision>')


def add_vm(w: World, name: str, **values: object) -> str:
    metrics = w.store.create("VM_metrics", last_updated=now_stamp())
    return w.store.create("VM", name_label=name, metrics=metrics, **values)  # type: ignore[arg-type]


def add_template(w: World, t: TemplateSpec) -> str:
    memory = t.memory_mib * MIB
    other = {"install-methods": "cdrom,nfs,http,ftp", "linux_template": "true", "default_template": "true"}
    if not t.premade_disk:
        other["disks"] = DISKS.format(size=t.disk_gib * 1024 ** 3)
    ref = add_vm(w, t.name, is_a_template=True, is_default_template=not t.premade_disk,
                 memory_static_min=memory, memory_static_max=memory, memory_dynamic_min=memory,
                 memory_dynamic_max=memory, memory_target=memory, VCPUs_max=t.vcpus, VCPUs_at_startup=t.vcpus,
                 HVM_boot_policy="BIOS order", HVM_boot_params={"order": "cd"}, domain_type="hvm",
                 platform={"nx": "true", "acpi": "1", "apic": "true", "pae": "true", "viridian": "false"},
                 other_config=other, user_version=1)
    if t.premade_disk:
        sr = w.store.get("pool", w.pool)["default_SR"]
        vdi = add_vdi(w, sr, f"{t.name} 0", t.disk_gib * 1024 ** 3)
        add_vbd(w, ref, vdi, "0", bootable=True)
    return ref


def build(w: World) -> None:
    for template in w.config.template_specs():
        add_template(w, template)


def add_control_domain(w: World, host: str, spec: HostSpec) -> None:
    memory = spec.dom0_mib * MIB
    ref = add_vm(w, f"Control domain on host: {spec.name}", is_control_domain=True, power_state="Running",
                 resident_on=host, domid=0, memory_static_min=memory, memory_static_max=memory,
                 memory_dynamic_min=memory, memory_dynamic_max=memory, memory_target=memory,
                 VCPUs_max=min(spec.cpus, 16), VCPUs_at_startup=min(spec.cpus, 16), domain_type="pv")
    w.store.link("host", host, "resident_VMs", ref)
    w.store.get("VM_metrics", w.store.get("VM", ref)["metrics"]).update(memory_actual=memory, VCPUs_number=1)


def _state(w: World, vm: str, *allowed: str) -> dict[str, object]:
    record = w.store.get("VM", vm)
    if record["power_state"] not in allowed:
        raise XenError("VM_BAD_POWER_STATE", vm, allowed[0].lower(), str(record["power_state"]).lower())
    return record


def _startable(w: World, vm: str) -> dict[str, object]:
    record = w.store.get("VM", vm)
    if record["is_a_template"]:
        raise XenError("VM_IS_TEMPLATE", vm)
    if record["is_control_domain"]:
        raise XenError("OPERATION_NOT_ALLOWED", "the control domain")
    return _state(w, vm, "Halted")


_next_domid = [0]


def _boot(w: World, vm: str, host: str, paused: bool) -> None:
    record = w.store.get("VM", vm)
    _next_domid[0] += 1
    record.update(power_state="Paused" if paused else "Running", resident_on=host, domid=_next_domid[0],
                  memory_target=record["memory_dynamic_max"], last_boot_CPU_flags={
                      "vendor": w.store.get("host", host)["cpu_info"]["vendor"],
                      "features": w.store.get("host", host)["cpu_info"]["features"]})
    w.store.link("host", host, "resident_VMs", vm)
    w.store.get("VM_metrics", record["metrics"]).update(
        memory_actual=record["memory_dynamic_max"], VCPUs_number=record["VCPUs_at_startup"],
        start_time=now_stamp(), last_updated=now_stamp(), state=["running"])
    for ref in record["VBDs"]:
        w.store.get("VBD", ref)["currently_attached"] = True
    for ref in record["VIFs"]:
        w.store.get("VIF", ref)["currently_attached"] = True
    guests.booted(w, vm)


def _need(w: World, vm: str, host: str) -> None:
    need = w.store.get("VM", vm)["memory_dynamic_max"]
    free = free_memory(w, host)
    if need > free:
        raise XenError("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


@message("VM.start", asyncable=True)
def start(w: World, session: str, vm: str, start_paused: bool, force: bool) -> None:
    record = _startable(w, vm)
    hosts = list(w.store.all("host"))
    if record["affinity"] in hosts:
        hosts.remove(record["affinity"])
        hosts.insert(0, record["affinity"])  # type: ignore[arg-type]
    need = record["memory_dynamic_max"]
    fits = [h for h in hosts if free_memory(w, h) >= need]  # type: ignore[operator]
    if not fits:
        raise XenError("HOST_NOT_ENOUGH_FREE_MEMORY", need, max(free_memory(w, h) for h in hosts))
    _boot(w, vm, fits[0], start_paused)


@message("VM.start_on", asyncable=True)
def start_on(w: World, session: str, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _startable(w, vm)
    _need(w, vm, host)
    _boot(w, vm, host, start_paused)


def force_halt(w: World, vm: str) -> None:
    record = w.store.get("VM", vm)
    w.store.unlink("host", record["resident_on"], "resident_VMs", vm)
    record.update(power_state="Halted", resident_on=NULL_REF, domid=-1)
    w.store.get("VM_metrics", record["metrics"]).update(memory_actual=0, VCPUs_number=0, state=[],
                                                        last_updated=now_stamp())
    for ref in record["VBDs"]:
        w.store.get("VBD", ref)["currently_attached"] = False
    for ref in record["VIFs"]:
        w.store.get("VIF", ref)["currently_attached"] = False
    guests.halted(w, vm)


def _stoppable(w: World, vm: str, *allowed: str) -> None:
    if w.store.get("VM", vm)["is_a_template"]:
        raise XenError("VM_IS_TEMPLATE", vm)
    if w.store.get("VM", vm)["is_control_domain"]:
        raise XenError("OPERATION_NOT_ALLOWED", "the control domain")
    _state(w, vm, *allowed)


@message("VM.clean_shutdown", asyncable=True)
def clean_shutdown(w: World, session: str, vm: str) -> None:
    _stoppable(w, vm, "Running")
    force_halt(w, vm)


@message("VM.hard_shutdown", asyncable=True)
def hard_shutdown(w: World, session: str, vm: str) -> None:
    _stoppable(w, vm, "Running", "Paused")
    force_halt(w, vm)


@message("VM.destroy", asyncable=True)
def destroy(w: World, session: str, vm: str) -> None:
    from tests.xensim.model.network import vif_destroy
    from tests.xensim.model.storage import drop_vbd

    record = _state(w, vm, "Halted")
    if record["is_control_domain"]:
        raise XenError("OPERATION_NOT_ALLOWED", "the control domain")
    for vif in list(record["VIFs"]):
        vif_destroy(w, session, vif)
    for vbd in list(record["VBDs"]):
        drop_vbd(w, vbd)
    w.store.destroy("VM_metrics", record["metrics"])
    w.store.destroy("VM", vm)


@message("VM.set_is_a_template")
def set_is_a_template(w: World, session: str, vm: str, value: bool) -> None:
    if value:
        _state(w, vm, "Halted")
    w.store.get("VM", vm)["is_a_template"] = value
    if not value:
        w.store.get("VM", vm)["is_default_template"] = False
