"""crane: declarative infrastructure as code for libvirt and XenServer.

The public surface for stack files. Names are imported lazily so that ``crane --version``
stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["VM", "AppDomain", "CloudInit", "Component", "Configuration", "Container", "CraneError", "IPv4Pool",
           "IPv6Pool", "LoadBalancer", "MPICluster", "Network", "Output", "ScalingPolicy", "Snapshot", "SshKey",
           "Storage", "StoragePool", "Volume", "WebTier", "__version__", "export", "import_", "moved", "setting",
           "variable"]
#: the app domain component and its parts, from crane_iac.appdomain
_APPDOMAIN = frozenset({"AppDomain", "LoadBalancer", "Storage", "WebTier"})

if TYPE_CHECKING:
    from crane_iac.appdomain.component import AppDomain, LoadBalancer, Storage, WebTier
    from crane_iac.autoscaler.policy import ScalingPolicy
    from crane_iac.errors import CraneError
    from crane_iac.mpi.component import MPICluster
    from crane_iac.resources import (
        VM,
        CloudInit,
        Component,
        Configuration,
        Container,
        IPv4Pool,
        IPv6Pool,
        Network,
        Output,
        Snapshot,
        SshKey,
        StoragePool,
        Volume,
        export,
        import_,
        moved,
        setting,
        variable,
    )


def __getattr__(name: str) -> Any:
    if name == "CraneError":
        from crane_iac.errors import CraneError

        return CraneError
    if name == "ScalingPolicy":
        from crane_iac.autoscaler.policy import ScalingPolicy

        return ScalingPolicy
    if name == "MPICluster":
        from crane_iac.mpi.component import MPICluster

        return MPICluster
    if name in _APPDOMAIN:
        from crane_iac.appdomain import component

        return getattr(component, name)
    if name in __all__:
        from crane_iac import resources

        return getattr(resources, name)
    raise AttributeError(f"module 'crane_iac' has no attribute {name!r}")
