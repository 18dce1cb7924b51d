"""A xenapi endpoint's keys in crane.toml: the password's source is exactly one of password_env and password_file
(never the password), unknown keys are named with the one meant, and an unset variable is found when the endpoint
opens, at its line of crane.toml; all without a pool or the SDK's connection. The provider's own resource rules."""

from __future__ import annotations

import subprocess
import sys

from crane_iac.providers.xenapi.validation import validate_resource
from tests.conftest import ProjectDir, assert_clean_error

STACK = '''from crane_iac import VM, Network
lan = Network("lan", mode="isolated")
VM("web", vcpus=1, memory_mib=256, networks=[lan])
'''


def _config(project: ProjectDir, keys: str) -> None:
    project.write_stack(STACK)
    project.write_config(f'''[stacks.main]
file = "stacks/main.py"
provider = "xenapi"
uri = "http://127.0.0.1:9"
{keys}
''')


def test_both_password_sources_are_refused_at_their_line(project: ProjectDir) -> None:
    _config(project, 'password_file = "pw.txt"\npassword_env = "XEN_PW"')
    assert_clean_error(project.crane("validate"), "crane.toml:6: stacks.main.password_env:",
                       "give password_env or password_file, not both")


def test_no_password_source_is_refused(project: ProjectDir) -> None:
    _config(project, 'username = "root"')
    assert_clean_error(project.crane("validate"), "stacks.main.password_env:", "never holds the password")


def test_an_unknown_key_names_the_one_meant(project: ProjectDir) -> None:
    _config(project, 'password_env = "XEN_PW"\npasword_file = "x"')
    assert_clean_error(project.crane("validate"), "crane.toml:6: stacks.main.pasword_file: unknown key; did you mean "
                       "'password_file'?")


def test_a_password_written_as_the_variable_is_refused(project: ProjectDir) -> None:
    _config(project, 'password_env = "hunter2!"')
    assert_clean_error(project.crane("validate"), "is not an environment variable's name")


def test_an_unset_variable_is_found_when_the_endpoint_opens_at_its_line(project: ProjectDir) -> None:
    _config(project, 'password_env = "CRANE_TEST_UNSET_XEN_PASSWORD"')
    assert project.crane("validate").code == 0  # no connection, no password needed
    result = project.crane("plan")
    assert_clean_error(result, "crane.toml:5: stacks.main.password_env: the environment variable "
                       "CRANE_TEST_UNSET_XEN_PASSWORD is not set")


def test_a_named_endpoint_s_missing_password_file_names_its_table(project: ProjectDir) -> None:
    project.write_stack(STACK)
    project.write_config('''[stacks.main]
file = "stacks/main.py"

[stacks.main.providers.pool]
type = "xenapi"
uri = "https://127.0.0.1:9"
password_file = "secrets/xen.txt"
''')
    result = project.crane("plan")
    assert_clean_error(result, "crane.toml:7: stacks.main.providers.pool.password_file: cannot read")


def test_loading_a_project_does_not_import_the_sdk(project: ProjectDir) -> None:
    _config(project, 'password_env = "XEN_PW"')
    code = ("import sys; sys.argv = ['crane', 'validate']; from crane_iac.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
            "print('XenAPI' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True)
    assert out.stdout.strip().endswith("exit 0\nFalse"), out.stdout + out.stderr


def test_xenserver_s_own_limits() -> None:
    vm = {"vcpus": 65, "max_vcpus": 65, "memory_mib": 256, "max_memory_mib": 256, "nics": [], "disks": [],
          "kernel": "/boot/vmlinuz", "cloud_init": None}
    problems = validate_resource("vm", vm)
    assert any("at most 64" in p for p in problems) and any("direct kernel boot" in p for p in problems)
    assert validate_resource("network", {"mode": "nat", "vlan": None})[0].startswith("mode='nat': a XenServer pool")
    assert "trunk" in validate_resource("network", {"mode": "bridge", "bridge": "eth1", "vlan": [1, 2]})[0]
    assert validate_resource("network", {"mode": "bridge", "bridge": "eth1", "vlan": 100}) == []
    assert validate_resource("network", {"mode": "isolated", "vlan": None}) == []
