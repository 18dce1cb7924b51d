"""The public surface is pinned: stack files and docs rely on these names."""

import subprocess
import sys

import crane_iac


def test_public_names_are_pinned() -> None:
    assert sorted(crane_iac.__all__) == sorted(
        ["VM", "CloudInit", "Component", "CraneError", "Network", "Output", "StoragePool", "Volume", "__version__",
         "export", "import_", "moved", "variable"]
    )
    for name in crane_iac.__all__:
        assert getattr(crane_iac, name) is not None


def test_version_does_not_import_heavy_modules() -> None:
    code = "import sys; sys.argv=['crane','--version']; from crane_iac.cli import main; main()\n"
    check = code + "\n"
    out = subprocess.run([sys.executable, "-c", check + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('pydantic','sqlalchemy','typer','rich','libvirt')))"], capture_output=True, text=True)
    assert out.stdout.startswith(f"crane {crane_iac.__version__}\n")
    assert out.stdout.strip().endswith("[]"), out.stdout
