"""The commands that read and edit what state holds: outputs, the lock, records, history and settings."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from crane_iac.commands.base import AsJson, Chdir, LockTimeout, Stack, Why, app, setting_app, state_app, workspace


@app.command()
def output(
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="One output.")] = None,  # noqa: UP045
    stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False,
    ansible_inventory: Annotated[bool, typer.Option(
        "--ansible-inventory", help="An Ansible inventory (YAML) of the hosts the stack configures.")] = False,
) -> int:
    """Show the stack's outputs."""
    from crane_iac.errors import CraneError
    from crane_iac.render import value

    if ansible_inventory:
        import yaml

        found = workspace(chdir, stack).ansible_inventory()
        print(json.dumps(found, indent=2) if as_json else yaml.safe_dump(found, sort_keys=False), end="")
        return 0
    outputs = workspace(chdir, stack).outputs()
    if name is not None:
        if name not in outputs:
            raise CraneError(f"no output {name!r}; the stack has: {', '.join(sorted(outputs)) or 'none'}")
        print(json.dumps(outputs[name]) if as_json else value(outputs[name]))
        return 0
    if as_json:
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        for key in sorted(outputs):
            print(f"{key} = {value(outputs[key])}")
    return 0



@app.command("force-unlock")
def force_unlock(
    lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID", help="The ID the 'locked by' message printed.")],
    stack: Stack = None, chdir: Chdir = Path("."),
    force: Annotated[bool, typer.Option("--force", metavar="",
                                        help="Break it even though its holder runs on this host.")] = False,
) -> None:
    """Remove a stack's lock left by a run that is gone (recorded in the history)."""
    ws = workspace(chdir, stack)
    info = ws.break_lock(lock_id, force=force)
    print(f"Unlocked stack {ws.name!r}: broke lock {lock_id} held by {info.holder} ({info.operation} since "
          f"{info.acquired_at}); recorded in `crane state history`.")

@state_app.command("list")
def state_list(stack: Stack = None, chdir: Chdir = Path(".")) -> None:
    """List recorded resources."""
    for address in sorted(workspace(chdir, stack).state().resources):
        print(address)

@state_app.command("show")
def state_show(address: Annotated[str, typer.Argument(metavar="ADDRESS")], stack: Stack = None,
               chdir: Chdir = Path(".")) -> None:
    """Show one recorded resource."""
    from crane_iac.errors import CraneError

    rec = workspace(chdir, stack).state().resources.get(address)
    if rec is None:
        raise CraneError(f"no resource {address!r} in state; see `crane state list`")
    print(json.dumps({"address": rec.address, "kind": rec.kind, "name": rec.physical, "endpoint": rec.endpoint,
                      "properties": rec.properties, "outputs": rec.outputs,
                      "dependencies": rec.dependencies, "protect": rec.protect}, indent=2, sort_keys=True))

@state_app.command("history")
def state_history(stack: Stack = None, chdir: Chdir = Path("."),
                  limit: Annotated[int, typer.Option("--limit", metavar="N", min=1)] = 100) -> None:
    """Show the journal of recorded changes, with the serial each made, grouped by the run that made them."""
    from itertools import groupby

    entries = workspace(chdir, stack).history(limit)
    for run, group in groupby(entries, key=lambda e: e.run):
        lines = list(group)
        indent = ""
        if run is not None:  # one header per run: an apply commits in batches, then its outputs
            first, last = lines[0].serial, lines[-1].serial
            serials = f"serial {first}" if first == last else f"serials {first}-{last}"
            print(f"run {run.id}  {run.operation}  by {run.by}  since {run.started_at}  {serials}")
            indent = "  "
        for entry in lines:
            who = f"  by {entry.by}" if entry.by else ""
            why = f": {entry.why}" if entry.why else ""
            print(f"{indent}{entry.at}  serial {entry.serial:<5} {entry.action:<8} {entry.address}{who}{why}")

@state_app.command("rm")
def state_rm(addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS...")], stack: Stack = None,
             chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
    """Forget resources (and everything nested under them) without destroying them."""
    for address in workspace(chdir, stack).forget(addresses, lock_timeout=lock_timeout):
        print(f"Removed {address} from state; its object stays on the hypervisor and crane leaves it alone.")

@state_app.command("mv")
def state_mv(old: Annotated[str, typer.Argument(metavar="OLD")], new: Annotated[str, typer.Argument(metavar="NEW")],
             stack: Stack = None, chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
    """Give a recorded resource a new address; its object keeps its name on the hypervisor."""
    workspace(chdir, stack).move(old, new, lock_timeout=lock_timeout)
    print(f"Moved {old} to {new}.")

@state_app.command("migrate")
def state_migrate(
    to: Annotated[str, typer.Option("--to", metavar="URL", help="The state store to copy every stack to.")],
    chdir: Chdir = Path("."),
) -> None:
    """Copy every stack's state to another backend (e.g. SQLite to PostgreSQL), without loss."""
    from crane_iac.config import find_project, load_project

    project = load_project(find_project(chdir.resolve()))
    ws = workspace(chdir, next(iter(project.config.stacks)))
    for line in ws.migrate_state(to).lines():
        print(line)

@setting_app.command("list")
def setting_list(stack: Stack = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
    """The stack's settings, with who set each and why."""
    found = workspace(chdir, stack).settings()
    if as_json:
        print(json.dumps({k: {"value": v.value, "by": v.by, "why": v.why, "at": v.at, "serial": v.serial}
                          for k, v in found.items()}, indent=2, sort_keys=True))
        return
    for key, item in sorted(found.items()):
        print(f"{key} = {json.dumps(item.value)}  (set by {item.by} at serial {item.serial}: {item.why})")



@setting_app.command("set")
def setting_set(
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="A JSON value (3, true, \"text\"), else text.")],
    why: Why, stack: Stack = None, chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0,
) -> None:
    """Set a durable setting; the next plan reads it."""
    from crane_iac.state.base import this_process

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    ws = workspace(chdir, stack)
    serial = ws.set_setting(key, parsed, by=this_process(), why=why, lock_timeout=lock_timeout)
    print(f"Set {key} = {json.dumps(parsed)} for stack {ws.name!r} (serial {serial}); `crane plan` shows what "
          "it changes.")

@setting_app.command("unset")
def setting_unset(key: Annotated[str, typer.Argument(metavar="KEY")], why: Why, stack: Stack = None,
                  chdir: Chdir = Path("."), lock_timeout: LockTimeout = 0.0) -> None:
    """Remove a setting: the stack's default applies again."""
    from crane_iac.errors import CraneError
    from crane_iac.state.base import this_process

    ws = workspace(chdir, stack)
    if key not in ws.settings():
        raise CraneError(f"stack {ws.name!r} has no setting {key!r}; see `crane setting list`")
    serial = ws.set_setting(key, None, by=this_process(), why=why, lock_timeout=lock_timeout)
    print(f"Unset {key} for stack {ws.name!r} (serial {serial}).")

