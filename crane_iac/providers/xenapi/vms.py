"""VMs from a template (the VM's own ``template``, else the endpoint's): cloned (``VM.clone``, the template's SR)
or copied to the endpoint's ``default_sr`` (``VM.copy``), owned at once (crane's keys in other_config),
provisioned, turned into a VM, sized, given VIFs with crane's stable MACs, its volumes attached (disks.py) and
started; apply waits for the guest tools to report an address on every NIC.

A crash between the clone and the owner being written leaves a template named after its owner
(``records.making_name``), a crash after an owned template: either is read as its owner's, ``unfinished`` in its
properties, which the next plan replaces (the stack still declares it) or deletes (an orphan); a create of that VM
removes a clone under its making name first all the same."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from crane_iac.errors import ProviderError
from crane_iac.objects import Live, Owner
from crane_iac.providers.metrics import MemoryUsage
from crane_iac.providers.xenapi.disks import DISK_KEY, Disks
from crane_iac.providers.xenapi.reading import NULL, read_vm
from crane_iac.providers.xenapi.records import (
    AUTO_POWERON,
    MIB,
    NIC_IPV4_KEY,
    NIC_IPV6_KEY,
    TEMPLATE_KEY,
    is_guest,
    making_name,
    owner_config,
    owner_of,
)
from crane_iac.providers.xenapi.rules import restarts
from crane_iac.providers.xenapi.session import Connection, XenApiError
from crane_iac.providers.xenapi.tasks import Tasks

log = logging.getLogger(__name__)


class Vms:
    """The ``vm`` kind. ``lookup`` finds objects by name in the last bulk read, or asks the pool."""

    def __init__(self, conn: Connection, tasks: Tasks, disks: Disks, *, template: str, default_sr: str | None,
                 address_timeout: float, shutdown_timeout: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn, self.tasks, self.disks = conn, tasks, disks
        self.template, self.default_sr = template, default_sr
        self.address_timeout, self.shutdown_timeout = address_timeout, shutdown_timeout
        self._clock, self._sleep = clock, sleep

    # lookups

    def find(self, physical: str) -> str | None:
        """The guest (not a template crane did not make) named ``physical``, or None."""
        for ref in self.conn.call("VM.get_by_name_label", physical):
            record = self.conn.call("VM.get_record", ref)
            if is_guest(record):
                return str(ref)
        return None

    def template_of(self, p: dict[str, Any]) -> str:
        """The template a VM is made from: its own, else the endpoint's."""
        return str(p.get("template") or self.template)

    def _template(self, name: str) -> str:
        for ref in self.conn.call("VM.get_by_name_label", name):
            if self.conn.call("VM.get_is_a_template", ref):
                return str(ref)
        raise ProviderError(f"the template {name!r} is not in the pool (the VM's template, or template in "
                            "crane.toml)")

    def _sr(self) -> str | None:
        if self.default_sr is None:
            return None
        found = self.conn.call("SR.get_by_name_label", self.default_sr)
        if not found:
            raise ProviderError(f"the SR {self.default_sr!r} is not in the pool (default_sr in crane.toml)")
        return str(found[0])

    def _network(self, name: str) -> str:
        found = self.conn.call("network.get_by_name_label", name)
        if not found:
            raise ProviderError(f"the network {name!r} is not in the pool")
        return str(found[0])

    # the kind

    def create(self, physical: str, p: dict[str, Any], owner: Owner) -> Live:
        making = making_name(owner)
        for ref in self.conn.call("VM.get_by_name_label", making):
            log.info("%s: removing %s, a clone an interrupted apply left", physical, making)
            self._destroy(ref)
        template, sr = self._template(self.template_of(p)), self._sr()
        if sr is None:
            ref = self.tasks.run("VM.clone", template, making, what=physical)
        else:
            ref = self.tasks.run("VM.copy", template, making, sr, what=physical)
        other = dict(self.conn.call("VM.get_other_config", ref))
        other.update(owner_config(owner))
        other[TEMPLATE_KEY] = self.template_of(p)
        if p["autostart"]:
            other[AUTO_POWERON] = "true"
        else:
            other.pop(AUTO_POWERON, None)
        self.conn.call("VM.set_other_config", ref, other)
        self.conn.call("VM.set_name_label", ref, physical)
        self.tasks.run("VM.provision", ref, what=physical)
        self.conn.call("VM.set_is_a_template", ref, False)
        self._size(ref, p, halted=True)
        if p["description"]:
            self.conn.call("VM.set_name_description", ref, p["description"])
        for index, nic in enumerate(p["nics"]):
            self._vif(ref, index, nic)
        self.disks.attach(ref, p["disks"], running=False, what=physical)
        if p["running"]:
            self.tasks.run("VM.start", ref, False, False, what=physical)
        return self._read(ref, wait=bool(p["running"]))

    def read(self, physical: str, p: dict[str, Any]) -> Live | None:
        ref = self.find(physical)
        return None if ref is None else read_vm(self.conn, ref)

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        ref = self.find(physical)
        if ref is None:
            raise ProviderError(f"vm {physical!r} is not in the pool")
        running = self.conn.call("VM.get_power_state", ref) == "Running"
        if running and (restarts("vm", before, after) or not after["running"]):
            self._stop(ref, physical)
            running = False
        self._size(ref, after, halted=not running, before=before)
        if sorted(after["disks"]) != sorted(before.get("disks") or []):
            self.disks.detach(ref, after["disks"], what=physical)
            self.disks.attach(ref, after["disks"], running=running, what=physical)
        if after["description"] != before.get("description"):
            self.conn.call("VM.set_name_description", ref, after["description"] or "")
        if after["autostart"] != before.get("autostart"):
            self.conn.call("VM.remove_from_other_config", ref, AUTO_POWERON)
            if after["autostart"]:
                self.conn.call("VM.add_to_other_config", ref, AUTO_POWERON, "true")
        started = after["running"] and not running
        if started:
            self.tasks.run("VM.start", ref, False, False, what=physical)
        return self._read(ref, wait=started)

    def delete(self, physical: str, p: dict[str, Any]) -> None:
        ref = self.find(physical)
        if ref is not None:
            self._destroy(ref)

    def memory_usage(self, physical: str) -> MemoryUsage | None:
        """``VM_metrics.memory_actual`` (what the guest has now) and the guest's free memory from the RRD data source
        ``memory_internal_free`` (KiB; reported by the guest tools only): None for a halted VM or one without them."""
        ref = self.find(physical)
        if ref is None or self.conn.call("VM.get_power_state", ref) != "Running":
            return None
        metrics = self.conn.call("VM.get_metrics", ref)
        if metrics == NULL:
            return None
        total = int(self.conn.call("VM_metrics.get_memory_actual", metrics)) / MIB
        try:
            free_kib = float(self.conn.call("VM.query_data_source", ref, "memory_internal_free"))
        except XenApiError:
            return None  # no guest tools: the guest reports no free memory
        free = free_kib / 1024
        return MemoryUsage(used_mib=max(total - free, 0.0), total_mib=total, unused_mib=free)

    # the steps

    def _size(self, ref: str, p: dict[str, Any], *, halted: bool, before: dict[str, Any] | None = None) -> None:
        """Memory and vCPUs: all of them on a halted VM, the dynamic range and more vCPUs on a running one."""
        memory, top = p["memory_mib"] * MIB, p["max_memory_mib"] * MIB
        was = before or {}
        if halted:
            static_min = min(int(self.conn.call("VM.get_memory_static_min", ref)), memory)
            self.conn.call("VM.set_memory_limits", ref, str(static_min), str(top), str(memory), str(memory))
            at_startup = int(self.conn.call("VM.get_VCPUs_at_startup", ref))
            if p["max_vcpus"] >= at_startup:
                self.conn.call("VM.set_VCPUs_max", ref, str(p["max_vcpus"]))
                self.conn.call("VM.set_VCPUs_at_startup", ref, str(p["vcpus"]))
            else:
                self.conn.call("VM.set_VCPUs_at_startup", ref, str(p["vcpus"]))
                self.conn.call("VM.set_VCPUs_max", ref, str(p["max_vcpus"]))
            return
        if p["memory_mib"] != was.get("memory_mib"):
            self.conn.call("VM.set_memory_dynamic_range", ref, str(memory), str(memory))
        if p["vcpus"] != was.get("vcpus"):
            self.conn.call("VM.set_VCPUs_number_live", ref, str(p["vcpus"]))
            self.conn.call("VM.set_VCPUs_at_startup", ref, str(p["vcpus"]))

    def _vif(self, vm: str, index: int, nic: dict[str, Any]) -> None:
        other = {key: nic[field] for key, field in ((NIC_IPV4_KEY, "ipv4"), (NIC_IPV6_KEY, "ipv6")) if nic.get(field)}
        self.conn.call("VIF.create", {
            "device": str(index), "network": self._network(nic["network"]), "VM": vm, "MAC": nic["mac"],
            "MTU": "1500", "other_config": other, "qos_algorithm_type": "", "qos_algorithm_params": {}})

    def _stop(self, ref: str, physical: str) -> None:
        """A clean shutdown (the guest's own, through its tools), then a hard one if it does not end in time."""
        try:
            self.tasks.run("VM.clean_shutdown", ref, what=physical, timeout=self.shutdown_timeout)
            return
        except ProviderError as exc:
            log.info("%s: clean shutdown failed (%s); powering it off", physical, exc)
        if self.conn.call("VM.get_power_state", ref) != "Halted":
            self.tasks.run("VM.hard_shutdown", ref, what=physical)

    def _destroy(self, ref: str) -> None:
        """Power the VM off, destroy it and the disks its template gave it (VBDs of type Disk); the volumes crane
        attached (disks.py) outlive it."""
        record = self.conn.call("VM.get_record", ref)
        if record["power_state"] in ("Running", "Paused", "Suspended"):
            self.tasks.run("VM.hard_shutdown", ref, what=record["name_label"])
        disks = []
        for vbd in record["VBDs"]:
            vbd_record = self.conn.call("VBD.get_record", vbd)
            if vbd_record["type"] != "Disk" or vbd_record["VDI"] == NULL or \
                    DISK_KEY in (vbd_record.get("other_config") or {}):
                continue
            if owner_of(self.conn.call("VDI.get_record", vbd_record["VDI"])) is None:
                disks.append(vbd_record["VDI"])
        self.conn.call("VM.destroy", ref)
        for vdi in disks:
            try:
                self.conn.call("VDI.destroy", vdi)
            except XenApiError as exc:
                if exc.code != "HANDLE_INVALID":
                    raise

    def _read(self, ref: str, *, wait: bool) -> Live:
        """The VM read back; ``wait``: until every NIC's address is reported (or ``address_timeout`` passes)."""
        live = read_vm(self.conn, ref)
        deadline = self._clock() + (self.address_timeout if wait else 0)
        delay = 0.1
        while wait and None in live.outputs["addresses"] and self._clock() < deadline:
            self._sleep(delay)
            delay = min(delay * 2, 2.0)
            live = read_vm(self.conn, ref)
        return live
