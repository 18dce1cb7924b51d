"""Resource models (pydantic, no I/O): one kind per module."""

from crane_iac.resources.base import (
    Output,
    Resource,
    export,
    import_,
    moved,
    setting,
    variable,
)
from crane_iac.resources.cloudinit import CloudInit
from crane_iac.resources.component import Component
from crane_iac.resources.configuration import Configuration
from crane_iac.resources.container import Container
from crane_iac.resources.ippools import IPv4Pool, IPv6Pool
from crane_iac.resources.network import Network
from crane_iac.resources.pool import StoragePool
from crane_iac.resources.registry import Registry, collecting
from crane_iac.resources.snapshot import Snapshot
from crane_iac.resources.ssh_key import SshKey
from crane_iac.resources.vm import VM
from crane_iac.resources.volume import Volume

KINDS: dict[str, type[Resource]] = {cls.kind: cls for cls in (VM, Container, Network, Volume, StoragePool,
                                                                 CloudInit, SshKey, Configuration, Snapshot)}

__all__ = [
    "KINDS",
    "VM",
    "CloudInit",
    "Component",
    "Configuration",
    "Container",
    "IPv4Pool",
    "IPv6Pool",
    "Network",
    "Output",
    "Registry",
    "Resource",
    "Snapshot",
    "SshKey",
    "StoragePool",
    "Volume",
    "collecting",
    "export",
    "import_",
    "moved",
    "setting",
    "variable",
]
