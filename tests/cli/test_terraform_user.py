"""What an engineer who knows Terraform reaches for on the first day, through the real `crane` command on the
sandbox: targeted destroys, saved plans, honest plan output, interrupts, import and state surgery, var-files."""

from __future__ import annotations

import json
import signal
import subprocess

import libvirt

from tests.conftest import CRANE, ProjectDir, assert_clean_error, ok

SHARED = """
from crane_iac import VM, Component, Network, export

back = Network("back", mode="isolated", ipv4="10.61.0.0/24")
cache = VM("cache", vcpus=1, memory_mib=128, networks=[back])
api = VM("api", vcpus=1, memory_mib={api_memory}, networks=[back])

class Pair(Component):
    kind = "pair"
    def build(self) -> None:
        self.net = Network("net", mode="isolated", ipv4="10.62.0.0/24")
        self.a = VM("a", vcpus=1, memory_mib=128, networks=[self.net])
        self.b = VM("b", vcpus=1, memory_mib=128, networks=[self.net])

Pair("duo")
export("api-ipv4", api.ipv4)
export("cache-mac", cache.macs[0])
"""


# 2. destroy --target takes the dependents, never the dependencies


def test_targeted_destroy_takes_dependents_not_dependencies(project: ProjectDir) -> None:
    project.write_stack(SHARED.format(api_memory=128))
    ok(project, "apply", "--auto-approve")
    one_vm = ok(project, "plan", "--destroy", "--target", "vm.cache")
    assert "- vm.cache" in one_vm and "network.back" not in one_vm.split("crane will make")[1]
    the_network = ok(project, "plan", "--destroy", "--target", "network.back")
    assert "- vm.cache" in the_network and "- vm.api" in the_network and "- network.back" in the_network
    assert "Plan: 0 to create, 0 to update, 0 to replace, 3 to delete." in the_network
    # one VM of a component: its sibling keeps the component's network
    ok(project, "destroy", "--auto-approve", "--target", "pair.duo/vm.a")
    assert "duo-net" in project.networks() and "duo-b" in project.domains() and "duo-a" not in project.domains()
    ok(project, "destroy", "--auto-approve", "--target", "vm.cache")
    assert "back" in project.networks() and "api" in project.domains() and "cache" not in project.domains()
    ok(project, "destroy", "--auto-approve", "--target", "network.back")
    assert "back" not in project.networks() and "api" not in project.domains()


def test_targeting_says_so_and_names_what_else_is_pending(project: ProjectDir) -> None:
    project.write_stack(SHARED.format(api_memory=128))
    ok(project, "apply", "--auto-approve")
    project.write_stack(SHARED.format(api_memory=256))
    targeted = ok(project, "plan", "--target", "vm.cache")
    assert "Warning: targeting is in effect (--target vm.cache)" in targeted
    assert "No changes for the targets." in targeted and "matches the stack" not in targeted
    assert "1 other resource(s) have changes pending outside the targets (vm.api)" in targeted
    applied = ok(project, "apply", "--auto-approve", "--target", "vm.cache")
    assert "Warning: targeting is in effect" in applied
    assert json.loads(ok(project, "plan", "--json", "--target", "vm.cache"))["untargeted"] == ["vm.api"]


# 4. saved plans


def test_saved_plan_records_its_stack_and_refuses_options_it_fixes(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.other]
        file = "stacks/main.py"
        [stacks.other.vars]
        n = { type = "int", default = 1 }
    """)
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    saved = ok(project, "plan", "--stack", "other", "--out", "p.crane")
    assert "apply it with: crane apply p.crane" in saved
    for flags in (["--var", "n=2"], ["--target", "vm.a"], ["--replace", "vm.a"], ["--refresh=false"]):
        assert_clean_error(project.crane("apply", "p.crane", *flags), "cannot be given with a saved plan")
    assert_clean_error(project.crane("apply", "p.crane", "--stack", "main"), "was made for stack 'other'")
    shown = ok(project, "show", "p.crane")
    assert "Saved plan for stack 'other', made against state serial 0" in shown and "+ vm.a" in shown
    assert json.loads(ok(project, "show", "p.crane", "--json"))["stack"] == "other"
    applied = project.crane("apply", "p.crane")  # no --stack: the plan says which
    assert applied.code == 0, applied.err
    assert project.domains() == ["a"]
    assert_clean_error(project.crane("show", "nope.crane"), "nope.crane: cannot read the plan")


def test_stale_plan_quotes_serials_found_in_history(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("a", vcpus=1, memory_mib=128)\n')
    ok(project, "plan", "--out", "p.crane")
    ok(project, "apply", "--auto-approve")
    stale = project.crane("apply", "p.crane")
    assert_clean_error(stale, "made against serial 0", "at serial 2 now",
                       "`crane state history` shows serials 1–2")
    history = ok(project, "state", "history")
    assert "serial 1 " in history and "serial 2 " in history  # the outputs commit leaves its line too


# 5. plan output a reviewer can trust


def test_plan_lists_attributes_changed_outputs_and_counts_a_replace_once(project: ProjectDir) -> None:
    project.write_stack(SHARED.format(api_memory=128))
    first = ok(project, "plan")
    block = [line.strip() for line in first[first.index("+ vm.api"):].split("\n")[1:13]]
    assert "memory_mib     = 128" in block and "vcpus          = 1" in block and "running        = true" in block
    assert "+ api-ipv4 = (known after apply)" in first and "+ cache-mac = 52:54:00:" in first
    ok(project, "apply", "--auto-approve")
    replaced = ok(project, "apply", "--auto-approve", "--replace", "vm.cache")
    assert "Plan: 0 to create, 0 to update, 1 to replace, 0 to delete." in replaced
    assert "Apply complete: 1 replaced in" in replaced
    # stop the api VM: only its address output changes, old → new
    project.write_stack(SHARED.format(api_memory=128).replace(
        'api = VM("api", vcpus=1, memory_mib=128, networks=[back])',
        'api = VM("api", vcpus=1, memory_mib=128, networks=[back], running=False)'))
    before = ok(project, "output", "api-ipv4").strip()
    stopped = ok(project, "plan")
    outputs = stopped[stopped.index("Changes to outputs:"):].split("\n\n")[0]
    assert outputs.splitlines()[1:] == [f"  ~ api-ipv4: {before} → (known after apply)"]
    assert "cache-mac" not in outputs


def test_a_restart_keeps_the_vms_uuid_known_and_only_its_address_is_known_after_apply(project: ProjectDir) -> None:
    stack = """
from crane_iac import VM, Network, export

lan = Network("lan", mode="isolated", ipv4="10.63.0.0/24")
db = VM("db", vcpus=1, memory_mib={memory}, networks=[lan])
VM("app", vcpus=1, memory_mib=64, description=db.uuid)
export("db-uuid", db.uuid)
export("db-ipv4", db.ipv4)
"""
    project.write_stack(stack.format(memory=128))
    ok(project, "apply", "--auto-approve")
    uuid = ok(project, "output", "db-uuid").strip()
    project.write_stack(stack.format(memory=256))  # a new maximum too: the guest restarts
    plan = ok(project, "plan")
    assert "~ vm.db  max_memory_mib: 128 → 256  # restarts the guest" in plan, plan
    assert "vm.app" not in plan and "db-uuid" not in plan, plan  # the same UUID after the restart: nothing to do
    assert f"  ~ db-ipv4: {ok(project, 'output', 'db-ipv4').strip()} → (known after apply)" in plan, plan
    ok(project, "plan", "--out", "p.crane")
    assert json.loads(ok(project, "show", "p.crane", "--json"))["outputs"]["db-uuid"] == uuid
    ok(project, "apply", "p.crane")
    assert ok(project, "output", "db-uuid").strip() == uuid


def test_a_huge_plan_is_summarised_with_the_full_text_in_json(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nfor i in range(520):\n    VM(f"v{i}", vcpus=1, memory_mib=16)\n')
    text = ok(project, "plan")
    assert "… and 20 more changes not shown; `crane plan --json`" in text
    assert text.count("+ vm.v") == 500 and "Plan: 520 to create" in text
    assert len(json.loads(ok(project, "plan", "--json"))["changes"]) == 520


# 6. interrupts


def _apply_in_background(project: ProjectDir, count: int, pace: float = 0.3) -> subprocess.Popen[str]:
    project.write_stack(f'from crane_iac import VM\nfor i in range({count}):\n    VM(f"v{{i}}", vcpus=1, '
                        'memory_mib=16)\n')
    env = {**__import__("os").environ, "NO_COLOR": "1", "CRANE_FAILPOINT": f"slow:{pace}"}
    proc = subprocess.Popen([*CRANE, "apply", "--auto-approve"], cwd=project.root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the first VM is created
        if ": created" in line:
            break
    return proc


def test_first_interrupt_finishes_what_is_in_flight_and_releases_the_lock(project: ProjectDir) -> None:
    proc = _apply_in_background(project, 30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "SIGINT: stopping: no new operation starts" in err and "The lock is released" in err
    assert "Apply INTERRUPTED" in out and "Traceback" not in err
    recorded = ok(project, "state", "list").split()
    assert 1 <= len(recorded) < 30 and sorted(recorded) == sorted(f"vm.{d}" for d in project.domains())
    finished = ok(project, "apply", "--auto-approve")  # not locked, nothing orphaned: it does the rest
    assert f"Apply complete: {30 - len(recorded)} created" in finished
    assert len(project.domains()) == 30


def test_second_interrupt_exits_at_once_and_crash_safety_takes_over(project: ProjectDir) -> None:
    proc = _apply_in_background(project, 30, pace=2.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    assert "SIGTERM: stopping" in proc.stderr.readline() + proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)  # while the step in flight still has most of its 2 s to go
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert "SIGTERM again: exiting at once" in err
    finished = ok(project, "apply", "--auto-approve")
    assert "Apply complete" in finished
    assert len(project.domains()) == 30 and len(ok(project, "state", "list").split()) == 30
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")


# 7. refresh updates outputs as a no-op apply would


def test_refresh_updates_the_stack_outputs(project: ProjectDir) -> None:
    project.write_stack(SHARED.format(api_memory=128))
    ok(project, "apply", "--auto-approve")
    assert ok(project, "output", "api-ipv4").strip().startswith("10.61.0.")
    from crane_iac.providers.libvirt import LibvirtProvider

    provider = LibvirtProvider(None, sandbox_dir=project.root / ".crane", mutating=True)
    provider.conn.lookupByName("api").destroy()  # stopped behind crane's back: no address any more
    provider.host.changing("vm", "api")  # what crane's own mutations do: the sandbox saves it at close
    provider.close()
    refreshed = ok(project, "refresh")
    assert "outputs changed: api-ipv4" in refreshed
    assert json.loads(ok(project, "output", "--json"))["api-ipv4"] is None


# 9. import, state rm, state mv, moved, var-files


def _define_outside_crane(project: ProjectDir, name: str) -> None:
    from crane_iac.providers.libvirt import LibvirtProvider

    provider = LibvirtProvider(None, sandbox_dir=project.root / ".crane", mutating=True)
    provider.conn.defineXML(f"<domain type='test'><name>{name}</name><memory unit='MiB'>256</memory>"
                            "<vcpu>1</vcpu><os><type>hvm</type></os></domain>").create()
    provider.host.changing("vm", name)
    provider.close()


def test_import_adopts_an_existing_domain_and_plans_its_differences(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("seed", vcpus=1, memory_mib=128)\n')
    ok(project, "apply", "--auto-approve")
    _define_outside_crane(project, "legacy")
    project.write_stack('from crane_iac import VM\nVM("seed", vcpus=1, memory_mib=128)\n'
                        'VM("legacy", vcpus=1, memory_mib=512)\n')
    unknown = project.crane("plan")
    assert_clean_error(unknown, "vm.legacy", "crane did not create it. Adopt it with `crane import vm.legacy`")
    assert "; or" not in unknown.err
    assert_clean_error(project.crane("import", "vm.nope"), "vm.nope is not declared in the stack")
    assert_clean_error(project.crane("import", "vm.legacy", "other-name"), "is named 'legacy' on the hypervisor")
    imported = ok(project, "import", "vm.legacy")
    assert "Imported vm 'legacy' as vm.legacy." in imported
    assert "~ vm.legacy  memory_mib: 256 → 512" in imported
    assert "vm.legacy" in ok(project, "state", "list").split()
    ok(project, "apply", "--auto-approve")
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    conn = project.sandbox()
    assert conn.lookupByName("legacy").maxMemory() == 512 * 1024
    conn.close()


def test_import_declarations_adopt_in_bulk(project: ProjectDir) -> None:
    for i in range(3):
        _define_outside_crane(project, f"old-{i}")
    project.write_stack('from crane_iac import VM, import_\nfor i in range(3):\n'
                        '    import_(to=VM(f"old-{i}", vcpus=1, memory_mib=256, running=True))\n')
    planned = ok(project, "plan")
    assert planned.count("(import: it exists on the hypervisor; crane records it)") == 3
    assert "Plan: 0 to create" in planned and "3 to adopt" in planned
    ok(project, "apply", "--auto-approve")
    assert len(ok(project, "state", "list").split()) == 3
    # recorded with the outputs the plan read (the apply calls no provider for an object taken as it is)
    uuid = project.sandbox().lookupByName("old-1").UUIDString()
    assert json.loads(ok(project, "state", "show", "vm.old-1"))["outputs"]["uuid"] == uuid
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")


def test_state_rm_forgets_without_destroying_and_the_object_is_left_alone(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("keep", vcpus=1, memory_mib=128)\n'
                        'VM("gone", vcpus=1, memory_mib=128)\n')
    ok(project, "apply", "--auto-approve")
    removed = ok(project, "state", "rm", "vm.gone")
    assert "Removed vm.gone from state" in removed
    assert project.domains() == ["gone", "keep"]
    project.write_stack('from crane_iac import VM\nVM("keep", vcpus=1, memory_mib=128)\n')
    # crane's owner metadata is still on the domain: it is not an orphan to delete, nor adopted
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["gone", "keep"]
    project.write_stack('from crane_iac import VM\nVM("keep", vcpus=1, memory_mib=128)\n'
                        'VM("gone", vcpus=1, memory_mib=128)\n')
    forgotten = project.crane("plan")
    assert_clean_error(forgotten, "`crane state rm` removed it", "Manage it again with `crane import vm.gone`")
    assert "; or" not in forgotten.err
    ok(project, "import", "vm.gone")
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    assert "forget   vm.gone" in ok(project, "state", "history")


def test_state_mv_and_moved_re_address_without_destroying(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM, Network\nlan = Network("lan", mode="isolated", '
                        'ipv4="10.63.0.0/24")\nVM("web", vcpus=1, memory_mib=128, networks=[lan])\n')
    ok(project, "apply", "--auto-approve")
    uuid = project.sandbox().lookupByName("web").UUIDString()
    # a rename through `crane state mv`
    assert_clean_error(project.crane("state", "mv", "vm.web", "network.web"), "a vm stays a vm")
    ok(project, "state", "mv", "vm.web", "vm.frontend")
    project.write_stack('from crane_iac import VM, Network\nlan = Network("lan", mode="isolated", '
                        'ipv4="10.63.0.0/24")\nVM("frontend", vcpus=1, memory_mib=128, networks=[lan])\n')
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    # a rename of the network declared in the stack: moved(...) instead of destroy and create
    project.write_stack('from crane_iac import VM, Network, moved\nlan = Network("front-lan", mode="isolated", '
                        'ipv4="10.63.0.0/24")\nmoved(from_="network.lan", to=lan)\n'
                        'VM("frontend", vcpus=1, memory_mib=128, networks=[lan])\n')
    planned = ok(project, "plan")
    assert "network.lan has moved to network.front-lan" in planned and "1 to move." in planned
    assert "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete" in planned
    ok(project, "apply", "--auto-approve")
    assert sorted(ok(project, "state", "list").split()) == ["network.front-lan", "vm.frontend"]
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    conn = project.sandbox()
    assert conn.lookupByName("web").UUIDString() == uuid and conn.networkLookupByName("lan").isActive()
    try:
        conn.networkLookupByName("front-lan")
        raise AssertionError("a moved network must keep its name")
    except libvirt.libvirtError:
        pass
    conn.close()


def test_a_state_mv_the_stack_has_not_followed_says_so_and_both_ways_out_work(project: ProjectDir) -> None:
    worker = 'from crane_iac import VM\nVM("worker", vcpus=1, memory_mib=128)\n'
    project.write_stack(worker)
    ok(project, "apply", "--auto-approve")
    ok(project, "state", "mv", "vm.worker", "vm.batch")
    refused = project.crane("plan")
    assert_clean_error(refused, "main.py:2: vm.worker: a vm named 'worker' already exists on the hypervisor: state "
                       "records it at vm.batch", "the stack still declares it as vm.worker",
                       "Declare it as vm.batch in the stack", "`crane state mv vm.batch vm.worker`")
    assert "belongs to" not in refused.err and "; or" not in refused.err
    # one way out: the record back where the stack has it
    ok(project, "state", "mv", "vm.batch", "vm.worker")
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    # the other: the stack follows the record (the object keeps its name)
    ok(project, "state", "mv", "vm.worker", "vm.batch")
    project.write_stack(worker.replace('VM("worker"', 'VM("batch"'))
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    assert project.domains() == ["worker"]


def test_one_name_on_two_endpoints_is_two_addresses_and_a_hypervisor_name(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.main.providers.lab]
        # no uri: a sandbox of its own
    """)
    stack = """from crane_iac import VM, Network
front = Network("front", mode="isolated", ipv4="10.64.0.0/24")
lab = Network({lab}, mode="isolated", ipv4="10.65.0.0/24", provider="lab")
VM("web", vcpus=1, memory_mib=128, networks=[front])
VM("web-lab", hypervisor_name="web", vcpus=1, memory_mib=128, networks=[lab], provider="lab")
"""
    # what a Terraform user writes first: one address twice; the message names both places and the way
    project.write_stack(stack.format(lab='"front"'))
    refused = project.crane("plan")
    assert_clean_error(refused, "main.py:3: network.front: duplicate address: network.front is also declared at "
                       f"{project.root / 'stacks' / 'main.py'}:2, on endpoint 'default' (this one is on 'lab')",
                       'Network("front-lab", hypervisor_name="front", ...)')
    project.write_stack(stack.format(lab='"front-lab", hypervisor_name="front"'))
    ok(project, "apply", "--auto-approve")
    lab_sandbox = libvirt.open(f"test://{project.root / '.crane' / 'sandboxes' / 'lab' / 'sandbox.xml'}")
    try:
        assert [n.name() for n in lab_sandbox.listAllNetworks(0)] == ["front"]
        assert [d.name() for d in lab_sandbox.listAllDomains(0)] == ["web"]
    finally:
        lab_sandbox.close()
    assert project.networks() == ["front"] and project.domains() == ["web"]
    assert sorted(ok(project, "state", "list").split()) == ["network.front", "network.front-lab", "vm.web",
                                                            "vm.web-lab"]
    shown = json.loads(ok(project, "state", "show", "network.front-lab"))
    assert (shown["name"], shown["endpoint"]) == ("front", "lab")
    assert ok(project, "plan", "--detailed-exitcode").startswith("No changes")
    # an address picks one of them: the lab's network and its guest go, the default endpoint's stay
    ok(project, "destroy", "--auto-approve", "--target", "network.front-lab")
    assert sorted(ok(project, "state", "list").split()) == ["network.front", "vm.web"]
    assert project.networks() == ["front"] and project.domains() == ["web"]
    # one endpoint, one name: still an error
    project.write_stack(stack.format(lab='"front-lab", hypervisor_name="front"').replace(', provider="lab")', ")"))
    assert_clean_error(project.crane("plan"), "main.py:3: network.front-lab: hypervisor name 'front' is already "
                       "used by network.front")


def test_var_files_and_command_line_vars(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.main.vars]
        count = { type = "int", default = 1 }
        size = { type = "int", default = 128 }
    """)
    project.write_stack('from crane_iac import VM, variable\nfor i in range(variable("count")):\n'
                        '    VM(f"w{i}", vcpus=1, memory_mib=variable("size"))\n')
    (project.root / "big.toml").write_text("count = 3\nsize = 256\n")
    planned = ok(project, "plan", "--var-file", "big.toml")
    assert "Plan: 3 to create" in planned and "memory_mib     = 256" in planned
    assert "Plan: 2 to create" in ok(project, "plan", "--var-file", "big.toml", "--var", "count=2")
    (project.root / "bad.toml").write_text("count = [1]\n")
    assert_clean_error(project.crane("plan", "--var-file", "bad.toml"), "bad.toml:1: count")
    assert_clean_error(project.crane("plan", "--var-file", "missing.toml"), "--var-file missing.toml: cannot read")


def test_replace_of_a_bare_name_suggests_the_address(project: ProjectDir) -> None:
    project.write_stack('from crane_iac import VM\nVM("cache", vcpus=1, memory_mib=128)\n')
    assert_clean_error(project.crane("plan", "--replace", "cache"), "no resource 'cache'", "did you mean vm.cache?")
    assert_clean_error(project.crane("plan", "--target", "vm.cahce"), "did you mean vm.cache?")


def test_help_shows_readable_types(project: ProjectDir) -> None:
    for command in ("plan", "apply", "destroy", "force-unlock", "import"):
        shown = "\n".join(line for line in ok(project, command, "--help").splitlines() if "--help" not in line)
        assert "list[" not in shown and "<bool>" not in shown and "<float" not in shown, shown
    plan_help = ok(project, "plan", "--help")
    assert "NAME=VALUE" in plan_help and "ADDRESS" in plan_help and "--var-file" in plan_help
