"""Changes to the pool behind the client's back, as another administrator (or a host failing) would make them:
they bypass the API (no session, no round trip counted) but keep the model consistent (back-references, host
memory, guest metrics). VMs are named by ``name_label`` (the first match; templates and control domains are
never matched)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.xensim import spec
from tests.xensim.config import HostSpec
from tests.xensim.model import host as hosts
from tests.xensim.model import vms

if TYPE_CHECKING:
    from tests.xensim.world import World

MIB = 1024 * 1024


class Backdoor:
    def __init__(self, world: World) -> None:
        self._w = world

    def _vm(self, name_label: str) -> str:
        for ref, rec in self._w.store.all("VM").items():
            if rec["name_label"] == name_label and not rec["is_a_template"] and not rec["is_control_domain"]:
                return ref
        raise KeyError(f"no VM named {name_label!r}")

    def vms(self) -> list[dict[str, Any]]:
        """Every VM's record (templates and control domains left out), as the API would encode it."""
        with self._w.store.lock:
            return [spec.encode_record("VM", rec) for rec in self._w.store.all("VM").values()
                    if not rec["is_a_template"] and not rec["is_control_domain"]]

    def records(self, cls: str) -> dict[str, dict[str, Any]]:
        """A deep copy of every record of ``cls`` by ref, as model values (ints as ints)."""
        with self._w.store.lock:
            return copy.deepcopy(self._w.store.all(cls))

    def destroy_vm(self, name_label: str) -> None:
        """The VM gone, halted first if it ran (its VDIs stay, as after ``VM.destroy``)."""
        w = self._w
        with w.store.lock:
            ref = self._vm(name_label)
            if w.store.get("VM", ref)["power_state"] != "Halted":
                vms.force_halt(w, ref)
            vms.destroy(w, "", ref)

    def set_memory(self, name_label: str, mib: int) -> None:
        """Static max and the dynamic range set to ``mib`` (a running VM's balloon follows at once)."""
        w = self._w
        with w.store.lock:
            ref = self._vm(name_label)
            record = w.store.get("VM", ref)
            value = mib * MIB
            record.update(memory_static_min=min(record["memory_static_min"], value), memory_static_max=value,
                          memory_dynamic_min=value, memory_dynamic_max=value, memory_target=value)
            if record["power_state"] != "Halted":
                w.store.get("VM_metrics", record["metrics"])["memory_actual"] = value

    def set_vcpus(self, name_label: str, count: int) -> None:
        with self._w.store.lock:
            self._w.store.get("VM", self._vm(name_label)).update(VCPUs_max=count, VCPUs_at_startup=count)

    def halt_vm(self, name_label: str) -> None:
        with self._w.store.lock:
            vms.force_halt(self._w, self._vm(name_label))

    def set_guest_free(self, name_label: str, mib: int) -> None:
        """What the guest reports as free memory (``memory_internal_free``)."""
        with self._w.store.lock:
            self._w.guest_free_kib[self._vm(name_label)] = mib * 1024

    def add_host(self, host: HostSpec) -> str:
        with self._w.store.lock:
            return hosts.add_host(self._w, host, len(self._w.store.all("host")))

    def reboot_host(self, name: str) -> None:
        """The host reboots: its VMs halt, and CPU features set for after the reboot take effect."""
        with self._w.store.lock:
            hosts.reboot(self._w, self._w.store.find("host", name_label=name)[0])

    def sessions(self) -> list[dict[str, Any]]:
        """The live sessions' records (originator, user, last active)."""
        with self._w.store.lock:
            return copy.deepcopy(list(self._w.store.all("session").values()))
