"""The pool's semantics: power states, memory, clone/copy/provision, back-references, networks and storage."""

from __future__ import annotations

from tests.waiting import wait_until
from tests.xensim import HostSpec, ManualClock, PoolSpec, Simulator, SRSpec, TemplateSpec
from tests.xensim.sdk import failure, login, new_vm, vif_record

GIB = 1024 ** 3


def test_power_state_machine(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "web")
        assert failure(x.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
        x.VM.start(vm, False, False)
        host = x.VM.get_resident_on(vm)
        assert vm in x.host.get_resident_VMs(host)
        assert failure(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
        assert failure(x.VM.clone, vm, "c")[0] == "VM_BAD_POWER_STATE"
        assert failure(x.VM.destroy, vm)[0] == "VM_BAD_POWER_STATE"
        x.VM.clean_shutdown(vm)
        assert vm not in x.host.get_resident_VMs(host) and x.VM.get_power_state(vm) == "Halted"
        x.VM.destroy(vm)
        assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"
        template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
        assert failure(x.VM.start, template, False, False) == ["VM_IS_TEMPLATE", template]


def test_start_needs_free_host_memory() -> None:
    with Simulator(PoolSpec(hosts=[HostSpec("small", memory_mib=4096, dom0_mib=1024)])) as sim, login(sim) as x:
        a, b = new_vm(x, "a"), new_vm(x, "b")
        x.VM.set_memory_limits(a, str(GIB), str(2 * GIB), str(2 * GIB), str(2 * GIB))
        x.VM.set_memory_limits(b, str(GIB), str(2 * GIB), str(2 * GIB), str(2 * GIB))
        host = x.host.get_all()[0]
        assert x.host.compute_free_memory(host) == str(3 * GIB)
        x.VM.start(a, False, False)
        assert failure(x.VM.start, b, False, False) == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(2 * GIB), str(GIB)]


def test_memory_and_vcpu_constraints(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "m")
        assert failure(x.VM.set_memory_limits, vm, str(2 * GIB), str(GIB), str(GIB), str(GIB))[0] == \
            "MEMORY_CONSTRAINT_VIOLATION"
        x.VM.set_memory_limits(vm, str(GIB), str(4 * GIB), str(2 * GIB), str(3 * GIB))
        x.VM.set_VCPUs_max(vm, "4")
        x.VM.set_VCPUs_at_startup(vm, "2")
        assert failure(x.VM.set_VCPUs_at_startup, vm, "5")[0] == "INVALID_VALUE"
        x.VM.start(vm, False, False)
        assert x.VM_metrics.get_memory_actual(x.VM.get_metrics(vm)) == str(3 * GIB)
        assert failure(x.VM.set_memory_static_range, vm, str(GIB), str(8 * GIB))[0] == "VM_BAD_POWER_STATE"
        x.VM.set_memory_dynamic_range(vm, str(GIB), str(2 * GIB))  # live
        assert x.VM_metrics.get_memory_actual(x.VM.get_metrics(vm)) == str(2 * GIB)
        assert failure(x.VM.set_VCPUs_max, vm, "8")[0] == "VM_BAD_POWER_STATE"


def test_clone_copy_provision_and_back_references() -> None:
    spec = PoolSpec(srs=[SRSpec("Local storage", size_gib=100), SRSpec("NFS", size_gib=15)],
                    templates=[TemplateSpec("Debian Bookworm 12", disk_gib=10),
                               TemplateSpec("Made", premade_disk=True)])
    with Simulator(spec) as sim, login(sim) as x:
        local, nfs = x.SR.get_by_name_label("Local storage")[0], x.SR.get_by_name_label("NFS")[0]
        vm = new_vm(x, "v")
        assert x.VM.get_is_a_template(vm) is False and "disks" not in x.VM.get_other_config(vm)
        (vbd,) = x.VM.get_VBDs(vm)
        vdi = x.VBD.get_VDI(vbd)
        assert x.VDI.get_VBDs(vdi) == [vbd] and vdi in x.SR.get_VDIs(local)
        assert x.VDI.get_virtual_size(vdi) == str(10 * GIB)
        (vif,) = x.VM.get_VIFs(vm)
        assert vif in x.network.get_VIFs(x.VIF.get_network(vif))
        copy = x.VM.copy(vm, "v2", nfs)
        (copy_vdi,) = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(copy)]
        assert copy_vdi in x.SR.get_VDIs(nfs) and x.SR.get_physical_utilisation(nfs) == str(10 * GIB)
        assert x.VIF.get_MAC(x.VM.get_VIFs(copy)[0]) != x.VIF.get_MAC(vif)
        assert failure(x.VM.copy, vm, "v3", nfs)[0] == "SR_FULL"
        assert len(x.VM.get_by_name_label("v3")) == 0  # a failed copy leaves nothing
        made = x.VM.clone(x.VM.get_by_name_label("Made")[0], "m")
        assert x.VM.get_is_a_template(made) is True and len(x.VM.get_VBDs(made)) == 1
        x.VM.destroy(vm)
        assert x.VDI.get_VBDs(vdi) == [] and vif not in x.network.get_VIFs(x.VIF.get_network(x.VM.get_VIFs(copy)[0]))
        assert failure(x.VBD.get_record, vbd)[0] == "HANDLE_INVALID"


def test_vifs_vbds_and_other_config(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "n", network=False)
        net = x.network.get_all()[0]
        x.VIF.create(vif_record(vm, net, "0", "02:00:00:00:00:01"))
        assert failure(x.VIF.create, vif_record(vm, net, "0"))[0] == "DEVICE_ALREADY_EXISTS"
        assert failure(x.VIF.create, vif_record(vm, net, "1", "nope"))[0] == "MAC_INVALID"
        assert failure(x.VIF.create, {"VM": vm})[0] == "FIELD_TYPE_ERROR"
        x.VM.add_to_other_config(vm, "crane/stack", "web")
        assert failure(x.VM.add_to_other_config, vm, "crane/stack", "x")[0] == "MAP_DUPLICATE_KEY"
        x.VM.remove_from_other_config(vm, "crane/stack")
        x.VM.set_name_label(vm, "renamed")
        assert "crane/stack" not in x.VM.get_other_config(vm) and x.VM.get_by_name_label("renamed") == [vm]


def test_vlans_on_every_host_and_internal_networks() -> None:
    with Simulator(PoolSpec(hosts=[HostSpec("a"), HostSpec("b")])) as sim, login(sim) as x:
        pif = x.PIF.get_all()[0]
        internal = x.network.create({"name_label": "internal", "other_config": {}})
        assert x.network.get_PIFs(internal) == []
        vlan_net = x.network.create({"name_label": "vlan7", "other_config": {}})
        pifs = x.pool.create_VLAN_from_PIF(pif, vlan_net, "7")
        assert len(pifs) == 2 and sorted(x.network.get_PIFs(vlan_net)) == sorted(pifs)
        assert {x.PIF.get_VLAN(p) for p in pifs} == {"7"}
        assert failure(x.pool.create_VLAN_from_PIF, pif, internal, "7")[0] == "PIF_VLAN_EXISTS"
        assert failure(x.pool.create_VLAN_from_PIF, pif, internal, "4095") == ["VLAN_TAG_INVALID", "4095"]
        assert failure(x.network.destroy, vlan_net)[0] == "NETWORK_CONTAINS_PIF"
        x.network.destroy(internal)


def test_guest_address_appears_only_after_the_delay() -> None:
    clock = ManualClock()
    with Simulator(PoolSpec(guest_address_delay=30.0), clock=clock) as sim, login(sim) as x:
        vm = new_vm(x, "g")
        x.VM.start(vm, False, False)
        assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
        assert failure(x.VM.query_data_source, vm, "memory_internal_free")[0] == "INTERNAL_ERROR"
        clock.advance(29)
        assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
        clock.advance(2)
        networks = x.VM_guest_metrics.get_networks(x.VM.get_guest_metrics(vm))
        assert networks["0/ip"].startswith("10.") and networks["0/ipv6/0"].startswith("fd00::")
        assert float(x.VM.query_data_source(vm, "memory_internal_free")) > 0
        sim.backdoor.set_guest_free("g", 100)
        assert x.VM.query_data_source(vm, "memory_internal_free") == 100 * 1024.0
        x.VM.hard_shutdown(vm)
        assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"


def test_backdoor_changes_behind_the_clients_back(xen_simulator: Simulator) -> None:
    with login(xen_simulator) as x:
        vm = new_vm(x, "b")
        x.VM.start(vm, False, False)
        xen_simulator.backdoor.set_memory("b", 512)
        assert x.VM.get_memory_dynamic_max(vm) == str(512 * 1024 * 1024)
        xen_simulator.backdoor.destroy_vm("b")
        assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"
        xen_simulator.backdoor.add_host(HostSpec("xs2", cpu_features="00000001-00000002"))
        assert len(x.host.get_all()) == 2 and len(x.PIF.get_all()) == 2
        wait_until(lambda: xen_simulator.backdoor.vms() == [], 1, "the VM gone from the backdoor's list")


def test_cpu_features_settable_on_a_legacy_pool() -> None:
    features = "0000ffff-0000ffff"
    with Simulator(PoolSpec(hosts=[HostSpec("old", cpu_features=features)], cpu_features_settable=True)) as sim, \
            login(sim) as x:
        host = x.host.get_all()[0]
        assert failure(x.host.set_cpu_features, host, "ffff0000-00000000")[0] == "INVALID_FEATURE_STRING"
        x.host.set_cpu_features(host, "000000ff-0000ffff")
        assert x.host.get_cpu_info(host)["features"] == features  # until the reboot
        sim.backdoor.reboot_host("old")
        assert x.host.get_cpu_info(host)["features"] == "000000ff-0000ffff"
