"""``crane xen``: what only a XenServer / XCP-ng pool has. ``crane xen cpu-mask ENDPOINT``: the hosts' CPUs, the
pool's common feature mask and the hosts that need it (the logic: crane_iac/providers/xenapi/cpu.py)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crane_iac.commands.base import AsJson, Chdir, Stack, app

if TYPE_CHECKING:
    from crane_iac.providers.xenapi.cpu import Applied, PoolCpus

xen_app = typer.Typer(help="XenServer / XCP-ng pools: what only they have.", no_args_is_help=True)
app.add_typer(xen_app, name="xen")

Endpoint = Annotated[str, typer.Argument(metavar="ENDPOINT", help="A xenapi endpoint of the stack, by its name in "
                                         "crane.toml (`default` for the one written on the stack itself).")]
Apply = Annotated[bool, typer.Option("--apply", metavar="", help="Set the mask through the API where the pool's "
                                     "version offers host.set_cpu_features (the hosts must then reboot).")]


def _opened(chdir: Path, stack: str | None, name: str) -> Any:
    """The xenapi endpoint ``name`` of the stack, opened (logged in); crane.toml's problems as ConfigErrors naming
    its file and line."""
    from crane_iac.config import find_project, load_project
    from crane_iac.engine.endpoints import sandbox_dir
    from crane_iac.errors import ConfigError, SettingError
    from crane_iac.providers.registry import open_provider
    from crane_iac.tomlfile import key_line

    project = load_project(find_project(chdir.resolve()))
    stack_name, config = project.stack(stack)
    endpoints = config.endpoints()
    path = project.path
    loc = ["stacks", stack_name] + ([] if name not in config.providers else ["providers", name])
    line = key_line(path.read_text(), loc)
    where = f"{path}:{line}" if line else str(path)
    xen = sorted(n for n, e in endpoints.items() if e.type == "xenapi")
    theirs = f"its xenapi endpoints: {', '.join(xen)}" if xen else "it has no xenapi endpoint"
    found = endpoints.get(name)
    if found is None:
        raise ConfigError(f"{path}: stack {stack_name!r} has no endpoint {name!r} ({theirs}); declare a pool under "
                          f"[stacks.{stack_name}.providers.{name}] with type = \"xenapi\"")
    if found.type != "xenapi":
        raise ConfigError(f"{where}: endpoint {name!r} of stack {stack_name!r} is a {found.type} endpoint, and "
                          f"crane xen cpu-mask reads a XenServer pool ({theirs}); name a xenapi endpoint, or give "
                          "this one type = \"xenapi\" in crane.toml")
    try:
        return open_provider("xenapi", found.model_dump(exclude={"type"}),
                             sandbox_dir=sandbox_dir(project.root / ".crane", name), mutating=False)
    except SettingError as exc:
        key = [*loc, exc.key]
        at = key_line(path.read_text(), key)
        raise ConfigError(f"{path}{f':{at}' if at else ''}: {'.'.join(key)}: {exc.message}") from None


@xen_app.command("cpu-mask")
def cpu_mask(endpoint: Endpoint, apply: Apply = False, stack: Stack = None, chdir: Chdir = Path("."),
             as_json: AsJson = False) -> int:
    """Each host's CPU (vendor, model, features), the pool's common mask (the features every host has), the hosts
    that need it and the xe command that sets it on each; with --apply, set it through the API where the pool
    offers host.set_cpu_features."""
    from crane_iac.errors import ProviderError
    from crane_iac.providers.xenapi import cpu

    provider = _opened(chdir, stack, endpoint)
    try:
        cpus = cpu.read_pool_cpus(provider.conn)
        if apply and cpus.needing and len(cpus.vendors) > 1:
            raise ProviderError(f"the pool at {provider.url} mixes CPU vendors ({', '.join(cpus.vendors)}): no "
                                "feature mask makes their CPUs alike; nothing was set")
        applied = cpu.set_masks(provider.conn, cpus) if apply and cpus.needing else None
    finally:
        provider.close()
    if as_json:
        print(json.dumps(_as_dict(endpoint, provider.url, cpus, applied), indent=2))
    else:
        print(_text(provider.url, cpus, applied, apply))
    return 1 if applied is not None and applied.failed else 0


def _as_dict(endpoint: str, url: str, cpus: "PoolCpus", applied: "Applied | None") -> dict[str, Any]:
    return {
        "endpoint": endpoint, "uri": url, "mask": cpus.mask, "vendors": list(cpus.vendors),
        "hosts": [{"name": h.name, "uuid": h.uuid, "vendor": h.vendor, "model": h.model, "features": h.features,
                   "needs_mask": h.mask is not None, "mask": h.mask, "features_after_reboot": h.after_reboot}
                  for h in cpus.hosts],
        "needing": [h.name for h in cpus.needing],
        "commands": cpus.commands(),
        "applied": None if applied is None else {
            "set_cpu_features_offered": applied.offered, "set": list(applied.set), "must_reboot": list(applied.set),
            "failed": [{"host": host, "error": error} for host, error in applied.failed]},
    }


def _text(url: str, cpus: "PoolCpus", applied: "Applied | None", asked: bool) -> str:
    width = max((len(h.name) for h in cpus.hosts), default=0)
    lines = [f"Pool at {url}: {len(cpus.hosts)} host{'s' if len(cpus.hosts) != 1 else ''}"]
    for h in cpus.hosts:
        lines.append(f"  {h.name:<{width}}  {h.vendor or '?'}  {h.model or '?'}")
        lines.append(f"  {'':<{width}}  features {h.features or '(not reported)'}"
                     + (f"; set for its next boot: {h.after_reboot}" if h.after_reboot else ""))
    if cpus.mask is None:
        return "\n".join([*lines, "", "The hosts report no CPU features: there is no mask to work out."])
    lines += ["", f"Common mask: {cpus.mask}"]
    if len(cpus.vendors) > 1:
        lines.append(f"The hosts' CPU vendors differ ({', '.join(cpus.vendors)}): no mask makes their CPUs alike.")
    if not cpus.needing:
        return "\n".join([*lines, "Every host has exactly the common features: none needs the mask."])
    lines.append("Hosts that need it (their CPUs have features another host lacks): "
                 + ", ".join(h.name for h in cpus.needing))
    commands = [f"  {c}" for c in cpus.commands()]
    if applied is None:
        if asked:
            return "\n".join(lines)
        return "\n".join([*lines, "", "To set it, run on the pool master, then reboot each host "
                          "(or run with --apply where the pool offers host.set_cpu_features):", *commands])
    if not applied.offered:
        return "\n".join([*lines, "", "This pool's API has no host.set_cpu_features (removed in XenServer 7.0, whose "
                          "pools level the CPU features a VM sees at its boot themselves): nothing was set. On a "
                          "pool before 7.0, run on the pool master, then reboot each host:", *commands])
    if applied.set:
        lines += ["", f"Set the mask on {', '.join(applied.set)}. It takes effect when "
                  f"{'they reboot' if len(applied.set) > 1 else 'it reboots'}: move their VMs off and reboot "
                  f"{'each' if len(applied.set) > 1 else 'it'} (xe host-evacuate, then xe host-reboot)."]
    for host, error in applied.failed:
        lines.append(f"Could not set it on {host}: {error}")
    return "\n".join(lines)
