"""The base of every resource: a pydantic model that registers itself with the stack being loaded.

A stack file constructs resources at module level. The loader sets a ``Registry`` in a
context variable (not a process global) while the file runs; each resource records
itself there with the file:line that built it. A resource whose fields are invalid
records diagnostics instead of raising, so every error in a stack is reported in one run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    field_validator,
)

from crane_iac.addresses import make_address
from crane_iac.errors import Diagnostic
from crane_iac.objects import DEFAULT_ENDPOINT, Kind, register_kind
from crane_iac.resources.internals import become_unvalidated, private_value, set_private
from crane_iac.resources.messages import describe
from crane_iac.resources.registry import current_registry

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(slots=True)
class _Meta:
    address: str
    physical: str
    file: str | None
    line: int | None
    valid: bool
    parent: Resource | None
    #: the fields whose value an address pool leases (``ipv4=pool.subnet()``)
    leased: frozenset[str] = frozenset()


class Output:
    """A value of a resource known only after apply (e.g. a VM's UUID); using it makes a dependency."""

    __slots__ = ("attribute", "resource")

    def __init__(self, resource: Resource, attribute: str) -> None:
        self.resource = resource
        self.attribute = attribute

    def marker(self) -> dict[str, str]:
        return {"$output": self.resource.address, "attribute": self.attribute}

    def __repr__(self) -> str:
        return f"Output({self.resource.address}.{self.attribute})"


def is_output_marker(value: Any) -> bool:
    return isinstance(value, dict) and "$output" in value


class Resource(BaseModel):
    """A piece of infrastructure declared in a stack; subclasses set ``kind`` and their fields.

    Fields are strict: ``vlan=True`` or ``vcpus="2"`` is an error, never coerced (an int is accepted for a float).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=False, strict=True)

    kind: ClassVar[str] = "resource"
    #: the kind's identity rule and provider type, registered when the class is defined (default: the kind's name,
    #: unique per endpoint, served by the endpoint's hypervisor)
    kind_rule: ClassVar[Kind | None] = None
    #: Fields whose values are resources or outputs the provider needs by physical name.
    name: str
    depends_on: list[InstanceOf[Resource]] = Field(default_factory=list)
    protect: bool = False
    ignore_changes: list[str] = Field(default_factory=list)
    create_before_destroy: bool = False
    #: the endpoint (crane.toml's ``[stacks.NAME.providers.ENDPOINT]``) that holds it; a component's children
    #: inherit the component's; None: the stack's default endpoint
    provider: str | None = None
    #: the name on the hypervisor, when not the one derived from the address (the resource's name, prefixed with its
    #: component's): ``Network("front-lab", hypervisor_name="front", provider="lab")`` beside ``Network("front")``.
    #: Like any hypervisor name it is the object's for life: a recorded object keeps the name it was created with
    hypervisor_name: str | None = None

    # crane's bookkeeping (a _Meta: address, hypervisor name, file:line, validity, parent) is kept in pydantic's store
    # of private attributes under "_meta", set and read through resources/internals.py and never declared: a
    # declared PrivateAttr has pydantic initialise it on every construction (twice for a subclass), which cost a
    # third of building a resource

    def __init__(self, name: str, /, **data: Any) -> None:
        registry = current_registry()
        where = registry.location() if registry else (None, None)
        parent = registry.parents[-1] if registry and registry.parents else None
        address = make_address(self.kind, str(name), parent.address if parent else None)
        leased: frozenset[str] = frozenset()
        if registry is not None and registry.resolver is not None:  # values from address pools: what they lease
            named = data.get("hypervisor_name")  # the physical name as below (a NIC's MAC, and so its SLAAC address)
            physical = registry.pinned.get(address) or (named if isinstance(named, str) else None) or \
                (f"{parent.physical_name}-{name}" if parent else str(name))
            data, leased = registry.resolver(registry, self.kind, address, data, physical)
        if any(type(v) is tuple for v in data.values()):
            data = _tuples_as_lists(type(self), data)
        try:
            super().__init__(name=name, **data)
        except ValidationError as exc:
            if registry is None:
                raise
            for message in describe(type(self), exc.errors()):
                registry.diagnostics.append(Diagnostic(message, where[0], where[1], address))
            become_unvalidated(self, name=name, **data)
            valid = False
        else:
            valid = True
        chosen = self.hypervisor_name if valid else None
        physical = (registry.pinned.get(address) if registry else None) or chosen or \
            (f"{parent.physical_name}-{name}" if parent else str(name))
        set_private(self, "_meta", _Meta(address, physical, where[0], where[1], valid, parent, leased))
        if registry is not None:
            registry.resources.append(self)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            register_kind(cls.kind_rule or Kind(cls.kind))

    @field_validator("name", "hypervisor_name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a safe hypervisor name: use 1-63 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        return value

    @property
    def meta(self) -> _Meta:
        # read from pydantic's store of private attributes (see resources/internals.py): a load reads it several
        # times per resource
        meta: _Meta | None = private_value(self, "_meta")
        assert meta is not None
        return meta

    @property
    def address(self) -> str:
        return self.meta.address

    @property
    def physical_name(self) -> str:
        """The name the hypervisor knows this resource by (component names prefix their children)."""
        return self.meta.physical

    def lineage(self) -> Iterator[Resource]:
        """This resource, then the components it belongs to, innermost first: what a child inherits comes from here."""
        node: Resource | None = self
        while node is not None:
            yield node
            node = node.meta.parent

    @property
    def endpoint(self) -> str:
        """The endpoint this resource lives on: its own ``provider``, else its nearest parent's, else the default."""
        return next((node.provider for node in self.lineage() if node.provider is not None), DEFAULT_ENDPOINT)

    @property
    def protected(self) -> bool:
        """``protect=True`` on this resource or on a component it belongs to (Pulumi's rule: children inherit it)."""
        return any(node.protect for node in self.lineage())

    @property
    def location(self) -> tuple[str | None, int | None]:
        return self.meta.file, self.meta.line

    @property
    def valid(self) -> bool:
        return self.meta.valid

    @property
    def managed(self) -> bool:
        """False for components, which group children and have nothing on a hypervisor."""
        return True

    def _referring_fields(self) -> Iterable[str]:
        """The fields that may hold a resource or an output: those whose type can (an unvalidated resource's
        values may be anything, so all of its fields)."""
        cls = type(self)
        if not self.meta.valid:
            return cls.model_fields
        fields = _REFERRING_FIELDS.get(cls)
        if fields is None:
            fields = _REFERRING_FIELDS[cls] = tuple(name for name, info in cls.model_fields.items()
                                                    if _may_refer(info.annotation))
        return fields

    def references(self) -> list[Resource]:
        """Resources this one depends on: passed as field values, used through outputs, or named in depends_on."""
        found: list[Resource] = []
        values = self.__dict__
        for fname in self._referring_fields():
            value = values.get(fname)
            if type(value) not in _PLAIN:
                _collect_refs(value, found)
        parent = self.meta.parent
        if parent is not None:
            _collect_refs(parent.depends_on, found)
        return found

    def named_references(self) -> list[tuple[str, Resource]]:
        """Resources passed as field values (``networks=[lan]``), by field: the provider finds them by name on this
        resource's endpoint. Outputs and ``depends_on`` are not among them (they may cross endpoints)."""
        found: list[tuple[str, Resource]] = []
        values = self.__dict__
        for fname in self._referring_fields():
            value = values.get(fname)
            if fname == "depends_on" or type(value) in _PLAIN:
                continue
            refs: list[Resource] = []
            _collect_refs(value, refs, outputs=False)
            found.extend((fname, ref) for ref in refs)
        return found

    def host_claims(self) -> list[tuple[str, str]]:
        """What this resource holds exclusively on its host besides its hypervisor name, as (what, name) pairs;
        two resources of one stack claiming the same thing is an error at plan time."""
        return []

    def properties(self) -> dict[str, Any]:
        """The provider inputs: plain JSON values, references by physical name, outputs as markers."""
        raise NotImplementedError(f"{type(self).__name__} must define properties()")

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def _tuples_as_lists(cls: type[Resource], data: dict[str, Any]) -> dict[str, Any]:
    """Strict mode takes only a list for a list field; a tuple (``networks=(lan, wan)``) is as good a sequence."""
    fields = cls.model_fields
    return {k: list(v) if type(v) is tuple and k in fields and _is_list(fields[k].annotation) else v
            for k, v in data.items()}


def _is_list(annotation: Any) -> bool:
    """Whether a field's type is ``list[...]``, or a union with one (``list[str] | None``)."""
    return get_origin(annotation) is list or any(get_origin(a) is list for a in get_args(annotation))


#: field values that hold no reference, told apart by their exact type before any isinstance check
_PLAIN = frozenset({str, int, float, bool, type(None)})
#: by resource class, the fields whose type may hold a reference (``_may_refer``): a VM has 19 fields, 5 of them
_REFERRING_FIELDS: dict[type[Resource], tuple[str, ...]] = {}


def _may_refer(annotation: Any) -> bool:
    """Whether a field of this type may hold a resource or an output: anything but plain values (``int``, ``str``,
    a ``Literal``) and lists, dicts and unions of them. Fields are strict, so a valid value has its field's type."""
    if annotation in _PLAIN:
        return False
    origin = get_origin(annotation)
    if origin is Literal:
        return False
    if origin is Annotated:
        return _may_refer(get_args(annotation)[0])
    if origin in (list, dict, tuple, set, frozenset, Union, UnionType):
        return any(_may_refer(arg) for arg in get_args(annotation) if arg is not Ellipsis)
    return True


def _collect_refs(value: Any, found: list[Resource], *, outputs: bool = True) -> None:
    if type(value) in _PLAIN:
        return
    if isinstance(value, Resource):
        found.append(value)
    elif isinstance(value, Output):
        if outputs:
            found.append(value.resource)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_refs(item, found, outputs=outputs)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_refs(item, found, outputs=outputs)


def plain(value: Any) -> Any:
    """A field value as the provider sees it: outputs become markers, resources their physical names."""
    if isinstance(value, Output):
        return value.marker()
    if isinstance(value, Resource):
        return value.physical_name
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def export(name: str, value: Any) -> None:
    """Declare a stack output, shown by ``crane output``; the value may be an ``Output``."""
    registry = current_registry()
    if registry is None:
        return
    registry.exports[name] = value


def variable(name: str) -> Any:
    """The value of a stack variable declared in crane.toml (overridable with ``--var name=value``)."""
    registry = current_registry()
    if registry is None or name not in registry.variables:
        from crane_iac.errors import CraneError

        declared = registry.variables if registry else {}
        close = difflib.get_close_matches(name, list(declared), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it declares {', '.join(sorted(declared)) or 'none'}"
        raise CraneError(f"stack variable {name!r} is not declared in crane.toml for this stack{hint}")
    return registry.variables[name]


def setting(key: str, default: Any) -> Any:
    """A durable setting of this stack from its state (``crane setting set KEY VALUE --why ...``, or a controller
    such as the autoscaler writing a tier's desired size), else ``default``. A human apply honours what was set
    instead of undoing it, and the plan warns that it does (naming the setting, who set it and why) whenever the
    setting differs from ``default``, the stack's own value; `crane setting unset KEY` hands the value back."""
    registry = current_registry()
    if registry is None:
        return default
    if key not in registry.settings_read:
        registry.settings_read.append(key)
        registry.setting_defaults[key] = default
    return registry.settings.get(key, default)


def moved(from_: str, to: Resource | str) -> None:
    """Declare that the resource recorded at address ``from_`` is now ``to`` (a resource, or its address): the plan
    re-addresses its record instead of destroying and creating it, and the object keeps its hypervisor name."""
    registry = current_registry()
    if registry is None:
        return
    file, line = registry.location()
    target = to.address if isinstance(to, Resource) else str(to)
    registry.moves.append((str(from_), target, file, line))


def import_(to: Resource, id: str | None = None) -> None:
    """Declare that ``to`` adopts the object that already exists on the hypervisor with its name (``id``, which may
    only repeat that name, or POOL/NAME for a volume): the plan imports it instead of refusing the name clash."""
    registry = current_registry()
    if registry is None:
        return
    registry.imports[to.address] = id
