"""Validation messages in the stack's language, and every variable problem of crane.toml reported in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from crane_iac.config import load_project
from crane_iac.errors import ConfigError, DiagnosticsError
from crane_iac.loader import load_stack
from crane_iac.resources import VM
from crane_iac.resources.messages import with_article
from crane_iac.tomlfile import var_line


def diagnostics(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "stack.py"
    path.write_text("from crane_iac import VM, Component, Network, Volume\n" + body)
    with pytest.raises(DiagnosticsError) as caught:
        load_stack(path)
    return [str(d).removeprefix(f"{path}:") for d in caught.value.diagnostics]


def test_each_pydantic_error_is_translated(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, '''lan = Network("lan", ipv4="10.0.0.0/24")
VM("a", vcpus=True, memory_mib=8, networks=[lan, "wan"], cmdline="x" * 5000, kernel="/k", description=3)
Network("n", mode="natt", ipv4="10.1.0.0/24", bridge="a bridge")
Volume("v", capacity_gib=0, base=5)
VM("b", vcpus=1)
''') == [
        "3: vm.a: vcpus: expected an int, got bool True",
        "3: vm.a: memory_mib: must be at least 16, got 8",
        "3: vm.a: networks[1]: expected a Network, got str 'wan'",
        "3: vm.a: description: expected a str or an Output, got int 3",
        "3: vm.a: cmdline: must be at most 4096 characters, got 5000",
        "4: network.n: mode: expected one of 'nat', 'isolated', 'route', 'open', 'bridge' or 'openvswitch', got 'natt'",
        "4: network.n: bridge: must match ^[A-Za-z0-9_.-]{1,15}$, got 'a bridge'",
        "5: volume.v: capacity_gib: must be at least 1, got 0",
        "5: volume.v: base: expected a Volume or a str, got int 5",
        "6: vm.b: memory_mib: required field is missing",
    ]


def test_validator_messages_are_kept_and_suggestions_replace_the_missing_field(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, '''VM("a", vcpus=1, memroy_mib=512)
VM("b", vcpus=1, memory_mib=512, kernel="vmlinuz", qqq=1)
Network("c", mode="bridge")
VM("d", vcpus=1, memory_mib=64, networks={"name": "lan"}, depends_on=[{"name": "x"}])
''') == [
        "2: vm.a: memroy_mib: unknown field; did you mean memory_mib?",
        "3: vm.b: kernel: 'vmlinuz' must be an absolute path on the hypervisor host",
        f"3: vm.b: qqq: unknown field; VM takes {', '.join(sorted(set(VM.model_fields) - {'name'}))}",
        "4: network.c: mode='bridge' needs bridge=<name of the existing host bridge>",
        "5: vm.d: depends_on[0]: expected a Resource, got dict {'name': 'x'}",
        "5: vm.d: networks: expected a list, got dict {'name': 'lan'}",
    ]


def test_a_word_after_an_article_takes_the_one_it_is_read_with(tmp_path: Path) -> None:
    assert [with_article(w) for w in ("'open'", "ssh_key", "vm", "`uuid`", "Output", "unknown")] == [
        "an 'open'", "an ssh_key", "a vm", "a `uuid`", "an Output", "an unknown"]


def test_a_component_field_is_strict_too(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, '''class Shop(Component):
    kind = "shop"
    size: int = 1

Shop("s", size="3", sise=2)
Shop("t", colour=2)
''') == [
        "6: shop.s: size: expected an int, got str '3'",
        "6: shop.s: sise: unknown field; did you mean size?",
        "7: shop.t: colour: unknown field; Shop takes create_before_destroy, depends_on, hypervisor_name, "
        "ignore_changes, protect, provider, size",
    ]


CONFIG = '''state = "sqlite:///.crane/state.db"

[stacks.other]
file = "other.py"
vars = { count = { type = "int" } }

[stacks.main]
file = "main.py"

[stacks.main.vars]
size = { type = "int", default = "big" }  # count = { type = "int" } is declared below
count = { type = "int" }
ratio = { type = "float", default = 0.5 }
debug = { type = "bool", default = false }
'''


def test_every_variable_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "crane.toml").write_text(CONFIG)
    project = load_project(tmp_path / "crane.toml")
    _, main = project.stack("main")
    with pytest.raises(ConfigError) as caught:
        project.resolve_vars(main, {"ratio": "half", "debgu": "1", "zzz": "2"})
    toml = tmp_path / "crane.toml"
    assert str(caught.value).splitlines() == [
        "5 problems with the stack's variables:",
        f"  --var debgu: not a variable of this stack in {toml}; did you mean debug?",
        f"  --var zzz: not a variable of this stack in {toml}; it declares count, debug, ratio, size",
        f"  {toml}:11: variable 'size': the default 'big' is a string, not an int; fix its default or pass "
        "--var size=VALUE (int)",
        f"  {toml}:12: variable 'count' has no default; pass --var count=VALUE (int)",
        f"  {toml}:13: variable 'ratio': 'half' is not a float, as given on the command line; "
        "pass --var ratio=VALUE (float)",
    ]
    assert project.resolve_vars(main, {"count": "3", "size": "4"}) == {"size": 4, "count": 3, "ratio": 0.5,
                                                                       "debug": False}


def test_a_single_variable_problem_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "crane.toml").write_text(CONFIG)
    project = load_project(tmp_path / "crane.toml")
    _, main = project.stack("main")
    with pytest.raises(ConfigError) as caught:
        project.resolve_vars(main, {"size": "4"})
    toml = tmp_path / "crane.toml"
    assert str(caught.value) == f"{toml}:12: variable 'count' has no default; pass --var count=VALUE (int)"


def test_the_declaration_line_is_found_in_each_toml_form() -> None:
    text = '[stacks.a]\nfile = "a.py"\nvars = { web = { type = "int" }, "db" = {} }\n[stacks."b".vars]\n  web = 1\n'
    assert [var_line(text, "a", "web"), var_line(text, "a", "db"), var_line(text, "b", "web")] == [3, 3, 5]
    assert var_line('[stacks.c]\nvars.web = { type = "int" }\n', "c", "web") == 2
    assert var_line(text, "a", "file") is None and var_line(text, "c", "web") is None


def test_a_default_is_of_its_declared_type_as_written(tmp_path: Path) -> None:
    (tmp_path / "crane.toml").write_text('[stacks.main]\nfile = "main.py"\n[stacks.main.vars]\n'
                                         'timeout = { type = "int", default = "600" }\n'
                                         'count = { type = "int", default = true }\n'
                                         'ratio = { type = "float", default = 2 }\n'
                                         'name = { type = "str", default = 7 }\n'
                                         'debug = { type = "bool", default = 1 }\n')
    project = load_project(tmp_path / "crane.toml")
    _, main = project.stack("main")
    with pytest.raises(ConfigError) as caught:
        project.resolve_vars(main, {})
    toml = tmp_path / "crane.toml"
    assert str(caught.value).splitlines()[1:] == [
        f"  {toml}:4: variable 'timeout': the default '600' is a string, not an int; fix its default or pass "
        "--var timeout=VALUE (int)",
        f"  {toml}:5: variable 'count': the default True is a boolean, not an int; fix its default or pass "
        "--var count=VALUE (int)",
        f"  {toml}:7: variable 'name': the default 7 is an integer, not a str; fix its default or pass "
        "--var name=VALUE (str)",
        f"  {toml}:8: variable 'debug': the default 1 is an integer, not a bool; fix its default or pass "
        "--var debug=VALUE (bool)",
    ]
    # an int is as good as a float; the command line's text is still converted
    values = project.resolve_vars(main, {"timeout": "600", "count": "3", "name": "x", "debug": "true"})
    assert values == {"timeout": 600, "count": 3, "ratio": 2.0, "name": "x", "debug": True}
    assert type(values["ratio"]) is float


def test_an_unknown_key_in_crane_toml_names_the_line_and_the_key_meant(tmp_path: Path) -> None:
    toml = tmp_path / "crane.toml"
    toml.write_text('stat = "sqlite:///x.db"\n[stacks.web]\nfile = "web.py"\n[stacks.mine]\nfiel = "main.py"\n'
                    'address_timeout = "5"\n[stacks.mine.providers.lab]\nurl = "qemu:///system"\n'
                    '[stacks.mine.vars]\nsize = { type = "int", default = 1, descripton = "x" }\n')
    with pytest.raises(ConfigError) as caught:
        load_project(toml)
    assert str(caught.value).splitlines() == [
        f"{toml}:1: stat: unknown key; did you mean 'state'?",
        f"{toml}:5: stacks.mine.fiel: unknown key; did you mean 'file'?",
        f"{toml}:6: stacks.mine.address_timeout: expected a number, got a string '5'",
        f"{toml}:8: stacks.mine.providers.lab.url: unknown key; did you mean 'uri'?",
        f"{toml}:10: stacks.mine.vars.size.descripton: unknown key; did you mean 'description'?",
    ]
    assert "Extra inputs" not in str(caught.value) and "file: " not in str(caught.value)
    toml.write_text('[stacks.web]\nfile = "web.py"\nreach_guests = 1\nqqq = 2\n')
    with pytest.raises(ConfigError) as caught:
        load_project(toml)
    assert str(caught.value).splitlines() == [
        f"{toml}:3: stacks.web.reach_guests: expected a boolean (true or false), got an integer 1",
        f"{toml}:4: stacks.web.qqq: unknown key; the keys here are address_timeout, domain_type, file, provider, "
        "providers, reach_guests, shutdown_timeout, uri, vars",
    ]
