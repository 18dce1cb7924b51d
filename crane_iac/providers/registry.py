"""Provider types by name: one factory maps an endpoint's ``type`` (``libvirt``, ``xenapi``) to the code that
opens it, as SQLAlchemy maps a URL's scheme to a dialect. A third-party provider registers under the entry-point
group ``crane_iac.providers`` (``name = "package.module:open_endpoint"``) and needs no change here.

An opener is ``open_endpoint(settings, *, sandbox_dir, mutating, lock_timeout) -> Provider``: ``settings`` are the
endpoint's keys from crane.toml (``uri`` and the type's own), ``sandbox_dir`` where a sandbox keeps its files. Beside
it, the opener's module may define

* ``Settings``, a pydantic model of the type's own crane.toml keys (every key of an endpoint but ``type`` and
  ``uri``): crane.toml's loader validates them with it, so an unknown key is reported at its file:line with the
  one meant; a type without it takes no keys of its own;
* ``validate_resource(kind, properties) -> list[str]``: the type's own rules for the resources it serves
  (Terraform's ValidateResourceConfig), checked whenever a stack loads, with no connection;
* ``shared_kinds(a, b) -> frozenset[str]``: from two endpoints' settings (``uri`` and the type's own keys), the kinds
  an object of which, made through one, is there by its name through the other (one libvirtd's qemu:///system and
  lxc:///system share networks and storage, not domains: crane_iac/sharing.py). A type without it shares nothing
  between endpoints; endpoints of two types never share;
* ``prepare()``: import what the opener needs (the provider's modules and its SDK), called on the main thread just
  before the endpoints connect, so that each connection's thread starts connecting at once instead of importing
  while the stack runs beside it on the other thread (they would take turns with the GIL).

The first three are read without opening anything, so the opener's module should import its hypervisor's SDK only in the
opener.

Companions (providers/endpoint.py) are found the same way, under the group ``crane_iac.companions``: an opener
``open_companion(hypervisor, *, state_dir, mutating, project_dir) -> Provider`` is called for every endpoint, with
the endpoint's hypervisor provider and a directory of the project's own for that endpoint; it must be cheap (no
connection).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from crane_iac.errors import ConfigError
from crane_iac.providers.base import Provider

#: built-in provider types, imported only when an endpoint of that type is opened
BUILT_IN = {"libvirt": "crane_iac.providers.libvirt.endpoint:open_endpoint",
            "xenapi": "crane_iac.providers.xenapi.endpoint:open_endpoint"}
#: built-in companions, opened beside every endpoint
BUILT_IN_COMPANIONS = {"ansible": "crane_iac.providers.ansible:open_companion"}

Opener = Callable[..., Provider]
#: a provider type's own rules: the problems (plain sentences) of one resource of ``kind`` with these properties
ResourceRules = Callable[[str, dict[str, Any]], list[str]]
#: the kinds two endpoints of one provider type share, from their settings (``uri`` and the type's own keys)
SharedKinds = Callable[[Mapping[str, Any], Mapping[str, Any]], frozenset[str]]


def provider_types() -> dict[str, str]:
    """Every known provider type and where its opener lives."""
    found = dict(BUILT_IN)
    for name, value in _registered("crane_iac.providers", tuple(sys.path)):
        found.setdefault(name, value)
    return found


def companion_types() -> dict[str, str]:
    """Every known companion and where its opener lives."""
    found = dict(BUILT_IN_COMPANIONS)
    for name, value in _registered("crane_iac.companions", tuple(sys.path)):
        found.setdefault(name, value)
    return found


@functools.lru_cache(maxsize=8)
def _registered(group: str, path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The entry points of ``group`` (name, target) as the distributions on ``path`` (sys.path, the cache's key: a
    distribution added to it is seen) declare them. Scanning every installed distribution's metadata takes ~15 ms,
    and a run asks several times."""
    del path
    return tuple((ep.name, ep.value) for ep in entry_points(group=group))


def _load(target: str) -> Opener:
    module, _, attribute = target.partition(":")
    found: Opener = getattr(importlib.import_module(module), attribute)
    return found


def _target(type_name: str) -> str:
    """Where ``type_name``'s opener lives; an unknown type is a ConfigError naming the one meant or the known ones."""
    known = provider_types()
    target = known.get(type_name)
    if target is None:
        close = difflib.get_close_matches(type_name, list(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known types: {', '.join(sorted(known))}"
        raise ConfigError(f"provider type {type_name!r} is not known; {hint}")
    return target


def opener(type_name: str) -> Opener:
    """The opener for ``type_name``; an unknown type is a ConfigError."""
    return _load(_target(type_name))


def settings_model(type_name: str) -> type[BaseModel] | None:
    """The model of ``type_name``'s own endpoint keys (``Settings`` beside its opener), or None for a type that takes
    none; an unknown type is a ConfigError."""
    module = importlib.import_module(_target(type_name).partition(":")[0])
    model = getattr(module, "Settings", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def open_provider(type_name: str, settings: Mapping[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> Provider:
    """Open one endpoint."""
    return opener(type_name)(dict(settings), sandbox_dir=sandbox_dir, mutating=mutating, lock_timeout=lock_timeout)


def open_companions(hypervisor: Provider, *, state_dir: Path, mutating: bool, project_dir: Path) -> list[Provider]:
    """Every companion for one endpoint, each with a directory of its own under ``state_dir``; ``project_dir`` is
    where relative paths in properties (a playbook) are."""
    return [_load(target)(hypervisor, state_dir=state_dir / name, mutating=mutating, project_dir=project_dir)
            for name, target in sorted(companion_types().items()) if name != hypervisor.provider_type]


def resource_rules(type_name: str) -> ResourceRules | None:
    """The rules of ``type_name`` for the resources it serves (``validate_resource`` beside its opener), or None for
    a type that has none or that is not known (opening it reports that)."""
    rules: ResourceRules | None = _beside_opener(type_name, "validate_resource")
    return rules


def sharing_rule(type_name: str) -> SharedKinds | None:
    """Which kinds two endpoints of ``type_name`` share (``shared_kinds`` beside its opener), or None for a type that
    shares nothing between its endpoints or that is not known (opening it reports that)."""
    rule: SharedKinds | None = _beside_opener(type_name, "shared_kinds")
    return rule


def prepare_opening(type_name: str) -> None:
    """Import what opening an endpoint of ``type_name`` needs (``prepare`` beside its opener, and the opener); a
    type not known is left to the opening, which reports it naming the endpoint."""
    if type_name not in provider_types():
        return
    opener(type_name)
    prepare: Callable[[], None] | None = _beside_opener(type_name, "prepare")
    if prepare is not None:
        prepare()


def _beside_opener(type_name: str, name: str) -> Any:
    """What the module of ``type_name``'s opener defines as ``name``, or None (also for a type not known)."""
    target = provider_types().get(type_name)
    if target is None:
        return None
    return getattr(importlib.import_module(target.partition(":")[0]), name, None)
