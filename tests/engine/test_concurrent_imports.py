"""The endpoints' threads and the stack's run never import the resource models' package at the same time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ProjectDir, ok

PROBE = textwrap.dedent("""
    import sys
    import crane_iac.providers.registry as registry

    opened = registry.open_provider
    seen = []

    def probing(*args, **kwargs):
        package = sys.modules.get("crane_iac.resources")
        spec = getattr(package, "__spec__", None)
        seen.append(package is not None and not getattr(spec, "_initializing", False))
        return opened(*args, **kwargs)

    registry.open_provider = probing
    import crane_iac.engine.endpoints as endpoints
    endpoints.open_provider = probing
    sys.argv = ["crane", "apply", "--auto-approve"]
    from crane_iac.cli import main
    try:
        main()
    finally:
        print("whole before each connection:", seen, file=sys.stderr)
""")


def test_the_models_package_is_imported_whole_before_a_connection_thread_starts(project: ProjectDir) -> None:
    # a fresh interpreter: in this one every module is imported already
    project.write_stack("""
        from crane_iac import Network
        Network("lan", mode="isolated", ipv4="10.9.0.0/24")
    """)
    ok(project, "apply", "--auto-approve")
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "whole before each connection: [True]" in run.stderr, run.stderr
