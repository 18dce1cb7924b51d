"""Resource models (pydantic, no I/O): one kind per module."""

from crane_iac.resources.base import Output, Registry, Resource, collecting, export, variable
from crane_iac.resources.component import Component
from crane_iac.resources.network import Network
from crane_iac.resources.vm import VM
from crane_iac.resources.volume import Volume

KINDS: dict[str, type[Resource]] = {cls.kind: cls for cls in (VM, Network, Volume)}

__all__ = [
    "KINDS",
    "VM",
    "Component",
    "Network",
    "Output",
    "Registry",
    "Resource",
    "Volume",
    "collecting",
    "export",
    "variable",
]
