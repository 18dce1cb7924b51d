"""Run a stack file and turn what it declared into the planner's ``Desired`` values.

Every problem is collected as a diagnostic naming file:line and the resource address;
the run ends with all of them at once (``DiagnosticsError``), never a traceback.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crane_iac.addresses import is_within
from crane_iac.errors import CraneError, Diagnostic, DiagnosticsError
from crane_iac.objects import Desired, identity
from crane_iac.planner.graph import find_cycle
from crane_iac.resources.base import Output, Resource, plain
from crane_iac.resources.registry import Registry, collecting
from crane_iac.scaling import ScalableTier, ScalesTiers
from crane_iac.sharing import NOTHING_SHARED, EndpointSharing

#: what a resource claims (hypervisor name, addresses: each a key and its label), where it is declared (file, line)
#: and its address: left for ``with_leases`` to check while some values are stand-ins
UncheckedClaims = tuple[list[tuple[Any, str]], str | None, int | None, str]


@dataclass
class LoadedStack:
    """What a stack file declares: managed resources in construction order, components, and outputs."""

    file: str
    desired: list[Desired]
    components: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: ``moved(...)`` declarations, (old address, new address), in declaration order
    moves: list[tuple[str, str]] = field(default_factory=list)
    #: addresses declared with ``import_(...)``
    imports: list[str] = field(default_factory=list)
    #: the durable settings the stack read (``setting(key, default)``)
    settings_read: list[str] = field(default_factory=list)
    #: the stack's own value of each setting it read (None: it has none)
    setting_defaults: dict[str, Any] = field(default_factory=dict)
    #: tiers a controller may resize, from the components that declare them (``ScalesTiers``)
    tiers: list[ScalableTier] = field(default_factory=list)
    #: address pools the stack names (PoolSpec), what it took from them (LeaseWant), each network's own pool's
    #: parent, and whether a value taken is a stand-in the engine must lease before the stack is planned
    pools: list[Any] = field(default_factory=list)
    lease_wants: list[Any] = field(default_factory=list)
    deferred_wants: list[Any] = field(default_factory=list)
    pool_parents: dict[str, str] = field(default_factory=dict)
    provisional: bool = False
    #: of a provisional run: the lease each value not leased yet needs for a run with leases to take the same one,
    #: the wants that run would note instead of the deferred ones, and the claims it would check (``with_leases``)
    stood_in: dict[tuple[str, str, str], str] = field(default_factory=dict)
    waiting_wants: list[Any] = field(default_factory=list)
    unchecked_claims: list[UncheckedClaims] = field(default_factory=list)

    def dependencies(self) -> dict[str, list[str]]:
        return {d.address: d.dependencies for d in self.desired}


def _stack_line(exc: BaseException, stack_file: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == stack_file:
            line = frame.lineno
    return line


def _run(path: Path, variables: dict[str, Any], pinned: dict[str, str], settings: dict[str, Any],
         project_dir: Path | None, leases: dict[tuple[str, str, str], str]) -> Registry:
    stack_file = str(path.resolve())
    registry = Registry(stack_file=stack_file, variables=variables, pinned=pinned, settings=settings,
                        project_dir=project_dir, leases=leases)
    try:
        source = path.read_text()
    except OSError as exc:
        raise DiagnosticsError([Diagnostic(f"cannot read stack file: {exc.strerror}", stack_file)]) from None
    try:
        code = compile(source, stack_file, "exec")
    except SyntaxError as exc:
        raise DiagnosticsError([Diagnostic(f"syntax error: {exc.msg}", stack_file, exc.lineno)]) from None
    namespace: dict[str, Any] = {"__name__": "__crane_stack__", "__file__": stack_file}
    with collecting(registry):
        try:
            exec(code, namespace)
        except DiagnosticsError as exc:  # crane's own words for what the stack got wrong (a WebTier's range)
            line = _stack_line(exc, stack_file)
            registry.diagnostics.extend(Diagnostic(d.summary, d.file or stack_file, d.line or line, d.address)
                                        for d in exc.diagnostics)
        except CraneError as exc:
            registry.diagnostics.append(Diagnostic(str(exc), stack_file, _stack_line(exc, stack_file)))
        except Exception as exc:
            line = _stack_line(exc, stack_file)
            registry.diagnostics.append(
                Diagnostic(f"the stack raised {type(exc).__name__}: {exc}", stack_file, line)
            )
    return registry


def _export_value(value: Any) -> Any:
    if isinstance(value, Output):
        return value.marker()
    if isinstance(value, Resource):
        return value.address
    if isinstance(value, (list, tuple)):
        return [_export_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _export_value(v) for k, v in value.items()}
    return plain(value)


def load_stack(path: Path, variables: dict[str, Any] | None = None,
               physical_names: dict[str, str] | None = None, settings: dict[str, Any] | None = None,
               project_dir: Path | None = None, leases: dict[tuple[str, str, str], str] | None = None,
               sharing: EndpointSharing = NOTHING_SHARED) -> LoadedStack:
    """Execute the stack file at ``path`` and validate what it declared. ``physical_names`` (address → name, from
    state with moves applied: see ``pinned_names``) pins hypervisor names: a resource moved to a new address is the
    same object and keeps its name (and the MACs derived from it). ``project_dir`` is where relative paths a stack
    names for crane (a playbook) are (default: the working directory). ``leases`` ((pool, address, field) → value)
    are the values address pools lease to the stack's resources; a value a resource takes from a pool without one
    is a stand-in, and the loaded stack says so (``provisional``). ``sharing`` says which kinds the stack's endpoints
    share (crane_iac/sharing.py): a resource may use by name one of a kind its endpoint shares with the other's, and
    the names and host claims of a shared kind are unique across the endpoints sharing it."""
    registry = _run(path, variables or {}, physical_names or {}, settings or {}, project_dir, leases or {})
    diagnostics = list(registry.diagnostics)
    diagnostics.extend(_check_declarations(registry))
    # each model is let go once it is a Desired value: 10,000 models and their Desired values at once would be
    # the load's peak memory
    pending: list[Resource] = registry.resources
    registry.resources = []
    members = {id(r) for r in pending}
    managed = [r.address for r in pending if r.managed]
    pending.reverse()
    seen: dict[str, tuple[str | None, int | None, str]] = {}  # address → where it was first declared, its endpoint
    physical_seen: dict[Any, str] = {}  # what a resource claims → its address
    unchecked: list[UncheckedClaims] = []
    desired: list[Desired] = []
    components: list[str] = []
    tiers: list[ScalableTier] = []
    unknown_ignored: list[Diagnostic] = []
    while pending:
        res = pending.pop()
        meta = res.meta
        file, line, address = meta.file, meta.line, meta.address
        if res.ignore_changes and meta.valid:
            unknown = set(res.ignore_changes) - set(type(res).model_fields) - set(_safe_props(res))
            if unknown:
                unknown_ignored.append(Diagnostic(
                    f"ignore_changes names unknown field(s) {sorted(unknown)}", file, line, address))
        if address in seen:
            diagnostics.append(Diagnostic(_duplicate(res, *seen[address]), file, line, address))
            continue
        endpoint = res.endpoint
        seen[address] = file, line, endpoint
        if not res.managed:
            components.append(address)
            if isinstance(res, ScalesTiers) and meta.valid:
                tiers.extend(res.scalable_tiers())
            continue
        for fname, ref in res.named_references():
            if ref.managed and id(ref) in members and not sharing.shares(ref.endpoint, endpoint, ref.kind):
                diagnostics.append(Diagnostic(_not_shared(fname, ref, res, sharing), file, line, address))
        deps: list[str] = []
        refs = res.references()
        for ref in refs:
            if id(ref) not in members:
                diagnostics.append(Diagnostic(
                    f"refers to {ref.address}, which is not declared in this stack", file, line, address))
            elif ref.managed:
                deps.append(ref.address)
            else:  # depending on a component means depending on all of its children
                deps.extend(a for a in managed if is_within(a, ref.address))
        if not meta.valid:
            continue
        props = res.properties()
        # a shared kind's names and claims are one set on every endpoint sharing it (one daemon's networks)
        scope = sharing.scope(endpoint, res.kind)
        claims = [(identity(res.kind, meta.physical, props, scope), f"hypervisor name {meta.physical!r}")]
        claims += [((scope, what, name), f"{what} {name!r}") for what, name in res.host_claims()]
        # while some values are stand-ins for what pools will lease, two may meet by chance: the claims are checked
        # with the leased values (``with_leases``, or the run with them)
        if registry.provisional:
            unchecked.append((claims, file, line, address))
        elif _clashes(claims, file, line, address, physical_seen, diagnostics):
            continue
        desired.append(Desired(
            address=address, kind=res.kind, physical=meta.physical, properties=props,
            dependencies=sorted(set(deps)), protect=res.protected, ignore_changes=list(res.ignore_changes),
            create_before_destroy=res.create_before_destroy, file=file, line=line, endpoint=endpoint))
    diagnostics.extend(unknown_ignored)
    cycle = find_cycle({d.address: d.dependencies for d in desired})
    if cycle:
        by_address = {d.address: d for d in desired}
        start = by_address[cycle[0]]
        diagnostics.append(Diagnostic(f"dependency cycle: {' -> '.join(cycle)}", start.file, start.line, start.address))
    if diagnostics:
        raise DiagnosticsError(diagnostics)
    outputs = {name: _export_value(value) for name, value in registry.exports.items()}
    return LoadedStack(file=registry.stack_file, desired=desired, components=components, outputs=outputs,
                       moves=[(old, new) for old, new, _, _ in registry.moves], imports=sorted(registry.imports),
                       settings_read=list(registry.settings_read),
                       setting_defaults=dict(registry.setting_defaults), tiers=tiers,
                       pools=list(registry.pools.values()), lease_wants=list(registry.lease_wants),
                       deferred_wants=list(registry.deferred_wants),
                       pool_parents=dict(registry.pool_parents), provisional=registry.provisional,
                       stood_in=dict(registry.stood_in), waiting_wants=list(registry.waiting_wants),
                       unchecked_claims=unchecked)


def _clashes(claims: list[tuple[Any, str]], file: str | None, line: int | None, address: str,
             seen: dict[Any, str], diagnostics: list[Diagnostic]) -> bool:
    """Whether a resource claims what another claimed before it (a hypervisor name, an address on a network),
    which is then in ``diagnostics``; else its claims are noted in ``seen``."""
    clash = next(((key, label) for key, label in claims if key in seen), None)
    if clash is not None:
        diagnostics.append(Diagnostic(f"{clash[1]} is already used by {seen[clash[0]]}", file, line, address))
        return True
    seen.update((key, address) for key, _ in claims)
    return False


def with_leases(loaded: LoadedStack, leases: dict[tuple[str, str, str], str]) -> LoadedStack | None:
    """``loaded``, a run with stand-ins, as the stack run with ``leases`` would load: when every value leased is the
    one that stood in for it, that run would declare the same resources with the same values (a pool that no other
    stack leases from hands out its lowest free values, as the stand-ins were), and what it does besides is done
    here: the claims checked, the deferred wants noted as wants. None when some value differs: run it again."""
    if not loaded.provisional or any(leases.get(key) != value for key, value in loaded.stood_in.items()):
        return None
    seen: dict[Any, str] = {}
    diagnostics: list[Diagnostic] = []
    for claims, file, line, address in loaded.unchecked_claims:
        _clashes(claims, file, line, address, seen, diagnostics)
    if diagnostics:
        raise DiagnosticsError(diagnostics)
    pools = {pool.name: pool for pool in loaded.pools}
    parents = dict(loaded.pool_parents)
    for _, pool, parent in loaded.waiting_wants:
        pools.setdefault(pool.name, pool)
        parents[pool.name] = parent
    return replace(loaded, lease_wants=loaded.lease_wants + [want for want, _, _ in loaded.waiting_wants],
                   deferred_wants=[], pools=list(pools.values()), pool_parents=parents, provisional=False,
                   stood_in={}, waiting_wants=[], unchecked_claims=[])


def pinned_names(loaded: LoadedStack, recorded: dict[str, str]) -> dict[str, str] | None:
    """The names to load the stack again with (``load_stack(physical_names=...)``) when a recorded resource, after
    the stack's moves, has another name than its address derives; None when every name agrees (the usual case: the
    stack runs once)."""
    names = names_after_moves(loaded, recorded)
    return names if any(names.get(d.address, d.physical) != d.physical for d in loaded.desired) else None


def names_after_moves(loaded: LoadedStack, recorded: dict[str, str]) -> dict[str, str]:
    """Recorded hypervisor names (address → name) with the stack's ``moved(...)`` declarations applied."""
    names = dict(recorded)
    for old, new in loaded.moves:
        if old in names and new not in names:
            names[new] = names.pop(old)
    return names


def _check_declarations(registry: Registry) -> list[Diagnostic]:
    """``moved`` must name a declared target and an address the stack no longer declares; ``import_`` ids must be
    the names the stack gives."""
    if not registry.moves and not registry.imports:
        return []
    declared: dict[str, Resource] = {r.address: r for r in registry.resources}
    problems = []
    for old, new, file, line in registry.moves:
        if new not in declared:
            problems.append(Diagnostic(f"moved(from_={old!r}, to={new!r}): {new} is not declared in this stack",
                                       file, line, new))
        elif old in declared:
            problems.append(Diagnostic(f"moved(from_={old!r}, ...): {old} is still declared; a moved resource "
                                       "leaves its old address", file, line, old))
    for address, name in registry.imports.items():
        res = declared[address]
        if name is not None and name not in (res.physical_name, identity(res.kind, res.physical_name,
                                                                          res.properties())[-1]):
            problems.append(Diagnostic(f"import_(id={name!r}): crane names this {res.kind} {res.physical_name!r} "
                                       "after its address; rename the object or the resource", *res.location, address))
    return problems


def _duplicate(res: Resource, file: str | None, line: int | None, endpoint: str) -> str:
    """A second resource at an address: where the first is, and (on another endpoint) how to have both."""
    first = f"{file}:{line}" if line else str(file)
    if endpoint == res.endpoint:
        return f"duplicate address: {res.address} is also declared at {first}; give each resource a unique name"
    return (f"duplicate address: {res.address} is also declared at {first}, on endpoint {endpoint!r} (this one is "
            f"on {res.endpoint!r}); an address names one resource of the stack whatever its endpoint. For a "
            f"{res.kind} named {res.physical_name!r} on each endpoint, give this one an address of its own and its "
            f"name on the hypervisor: {type(res).__name__}(\"{res.name}-{res.endpoint}\", "
            f"hypervisor_name=\"{res.physical_name}\", ...)")


def _not_shared(field: str, ref: Resource, res: Resource, sharing: EndpointSharing) -> str:
    """Why ``res`` cannot use ``ref`` (on another endpoint) by name, and what it may use across endpoints."""
    shared = sharing.shared_kinds(ref.endpoint, res.endpoint)
    may = (f"these two endpoints share only {', '.join(shared)} objects" if shared else
           "these two endpoints share no objects (endpoints of one provider type may share some: one libvirtd's "
           "qemu:///system and lxc:///system share networks and storage pools)")
    return (f"{field}: {ref.address} is on endpoint {ref.endpoint!r} and this {res.kind} on {res.endpoint!r}; "
            f"a resource can use by name only what is on its own endpoint or shared with it, and {may}; declare "
            f"{ref.address} on endpoint {res.endpoint!r} (an output, such as .uuid, may cross)")


def _safe_props(res: Resource) -> dict[str, Any]:
    try:
        return res.properties()
    except Exception:
        return {}
