"""xapi failures as the simulator raises them, and which failures the conformance test accepts beyond those the
data model lists for a message."""

from __future__ import annotations


class XenError(Exception):
    """A xapi failure: sent as ``{"Status": "Failure", "ErrorDescription": [code, *params]}``."""

    def __init__(self, code: str, *params: object) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


#: Failures xapi raises for any call, whatever the message's declared errors: an unknown or destroyed ref, a
#: session that is not (or no longer) valid, a wrong argument count or type, an unknown or removed method, a
#: duplicate key for a map's add_to_, an unknown uuid for get_by_uuid.
GENERIC = frozenset({"HANDLE_INVALID", "SESSION_INVALID", "MESSAGE_PARAMETER_COUNT_MISMATCH",
                     "MESSAGE_METHOD_UNKNOWN", "MESSAGE_REMOVED", "FIELD_TYPE_ERROR", "MAP_DUPLICATE_KEY",
                     "UUID_INVALID", "OPERATION_NOT_ALLOWED", "INTERNAL_ERROR"})

#: Failures real xapi raises for these messages that the data model's per-message error lists leave out (the lists
#: are documentation and incomplete); each is one xapi defines and raises in the place named.
UNLISTED = {
    "VM.start": {"HOST_NOT_ENOUGH_FREE_MEMORY"},
    "VM.start_on": {"HOST_NOT_ENOUGH_FREE_MEMORY"},
    "VM.destroy": {"VM_BAD_POWER_STATE"},
    "VM.clone": {"VM_IS_TEMPLATE"},
    "VM.copy": {"VM_IS_TEMPLATE"},
    "VM.provision": {"VM_IS_TEMPLATE"},
    "VM.set_memory_limits": {"MEMORY_CONSTRAINT_VIOLATION", "VM_BAD_POWER_STATE"},
    "VM.set_memory_static_range": {"MEMORY_CONSTRAINT_VIOLATION", "VM_BAD_POWER_STATE"},
    "VM.set_memory_dynamic_range": {"MEMORY_CONSTRAINT_VIOLATION"},
    "VM.set_memory": {"MEMORY_CONSTRAINT_VIOLATION", "VM_BAD_POWER_STATE"},
    "VM.set_VCPUs_max": {"VM_BAD_POWER_STATE", "INVALID_VALUE"},
    "VM.set_VCPUs_at_startup": {"INVALID_VALUE", "VM_BAD_POWER_STATE"},
    "VM.query_data_source": {"VM_BAD_POWER_STATE"},
    "VM.set_is_a_template": {"VM_BAD_POWER_STATE"},
    "VIF.create": {"MAC_INVALID", "DEVICE_ALREADY_EXISTS", "VM_BAD_POWER_STATE"},
    "VBD.create": {"DEVICE_ALREADY_EXISTS", "VM_BAD_POWER_STATE"},
    "VDI.create": {"SR_FULL"},
    "VDI.destroy": {"VDI_IN_USE"},
    "VDI.resize": {"SR_FULL", "SR_OPERATION_NOT_SUPPORTED"},
    "VBD.plug": {"VM_BAD_POWER_STATE", "DEVICE_ALREADY_ATTACHED"},
    "VIF.destroy": {"VM_BAD_POWER_STATE"},
    "VBD.destroy": {"VM_BAD_POWER_STATE"},
    "network.destroy": {"NETWORK_CONTAINS_VIF", "NETWORK_CONTAINS_PIF"},
    "pool.create_VLAN_from_PIF": {"PIF_VLAN_EXISTS", "PIF_IS_VLAN"},
    "VLAN.create": {"PIF_VLAN_EXISTS", "PIF_IS_VLAN", "VLAN_TAG_INVALID"},
    "host.set_cpu_features": {"INVALID_FEATURE_STRING"},
}
