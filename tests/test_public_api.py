"""The public surface is pinned: stack files and docs rely on these names."""

import subprocess
import sys

import crane_iac


def test_public_names_are_pinned() -> None:
    assert sorted(crane_iac.__all__) == sorted(
        ["VM", "AppDomain", "CloudInit", "Component", "Configuration", "Container", "CraneError", "IPv4Pool",
         "IPv6Pool", "LoadBalancer", "MPICluster", "Network", "Output", "ScalingPolicy", "Snapshot", "SshKey",
         "Storage", "StoragePool", "Volume", "WebTier", "__version__", "export", "import_", "moved", "setting",
         "variable"]
    )
    from crane_iac import errors, resources
    from crane_iac.appdomain import component
    from crane_iac.mpi.component import MPICluster

    # each name is the object its home module defines (the lazy loader hands out the real thing)
    parts = {"AppDomain", "LoadBalancer", "Storage", "WebTier"}
    from crane_iac.autoscaler.policy import ScalingPolicy

    assert crane_iac.ScalingPolicy is ScalingPolicy
    assert crane_iac.MPICluster is MPICluster
    for name in set(crane_iac.__all__) - {"__version__", "CraneError", "ScalingPolicy", "MPICluster"} - parts:
        assert getattr(crane_iac, name) is getattr(resources, name), name
    for name in parts:
        assert getattr(crane_iac, name) is getattr(component, name), name
    assert crane_iac.CraneError is errors.CraneError
    namespace: dict[str, object] = {}
    exec("from crane_iac import *", namespace)
    assert set(crane_iac.__all__) <= set(namespace)


def test_version_does_not_import_heavy_modules() -> None:
    code = "import sys; sys.argv=['crane','--version']; from crane_iac.cli import main; main()\n"
    check = code + "\n"
    out = subprocess.run([sys.executable, "-c", check + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('pydantic','sqlalchemy','typer','rich','libvirt')))"], capture_output=True, text=True)
    assert out.stdout.startswith(f"crane {crane_iac.__version__}\n")
    assert out.stdout.strip().endswith("[]"), out.stdout
