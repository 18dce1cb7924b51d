"""The provider contract: read everything in bulk, judge a diff, create, update, delete; no planner, no state store.
Objects carry their owner (stack, address) in the hypervisor's metadata where it has a place: crane adopts them.

The mutating calls take one typed request each (``CreateRequest``, ``UpdateRequest``, ``DeleteRequest``) and return
the object as read back (``Live``), as Terraform's providers.Interface does: what a later provider needs is a new
field with a default, not a new parameter in every provider. The plan-time questions (``diff``, ``check``,
``remark``, ``replacement_name``) stay plain calls: they ask about properties, and change nothing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from crane_iac.errors import ProviderError
from crane_iac.objects import FieldChange, Live, Owner, Reach


def no_progress(note: str) -> None:
    """Where a request's progress goes when no one shows it."""


#: where a long call reports how far it has got ("VM.clone 40%"): the apply shows it under the step while it runs
ProgressNote = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Make one object (Terraform's ApplyResourceChange for a create). A field a later provider needs (a placement
    host, a progress callback for a long task) is added here with a default, and no signature changes."""

    kind: str
    #: the object's name on the hypervisor
    physical: str
    #: its properties as the plan resolved them (outputs of other objects filled in)
    properties: dict[str, Any]
    #: the stack and address that own it, which the provider writes into the object's metadata
    owner: Owner
    progress: ProgressNote = field(default=no_progress, compare=False)


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """Change one object in place, from the properties state recorded to the ones the plan wants."""

    kind: str
    physical: str
    before: dict[str, Any]
    after: dict[str, Any]
    progress: ProgressNote = field(default=no_progress, compare=False)


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Remove one object, with the properties state recorded for it (where it lives: a volume's pool)."""

    kind: str
    physical: str
    properties: dict[str, Any]
    progress: ProgressNote = field(default=no_progress, compare=False)


class KindHandler(Protocol):
    """One resource kind on one hypervisor: the shape of each per-kind module a provider dispatches to (the engine
    sees only ``Provider``)."""

    def create(self, physical: str, properties: dict[str, Any], owner: Owner) -> Live:
        """Make the object and return it as read back."""

    def read(self, physical: str, properties: dict[str, Any]) -> Live | None:
        """The object as the hypervisor reports it now, or None when it is gone."""

    def update(self, physical: str, before: dict[str, Any], after: dict[str, Any]) -> Live:
        """Change the object in place; a kind that cannot raises ``ProviderError``."""

    def delete(self, physical: str, properties: dict[str, Any]) -> None:
        """Remove the object (the provider treats an object already gone as deleted)."""


class Provider(ABC):
    """A hypervisor as crane sees it."""

    #: The name a stack's configuration gives this kind of hypervisor (``libvirt``, ``xenapi``); empty for a
    #: provider no configuration names.
    provider_type: ClassVar[str] = ""
    #: Kinds this provider manages, in the order objects of a kind may be needed by the next.
    kinds: tuple[str, ...] = ()
    #: Calls worth making at once (None: as many as the user asks). An in-process hypervisor that serialises
    #: its calls gains nothing from threads and loses to their hand-offs.
    max_parallelism: int | None = None

    @property
    def listed_kinds(self) -> frozenset[str]:
        """Kinds whose objects ``read_all`` reports completely: a recorded object of such a kind that is absent was
        deleted outside crane. A kind not listed is state-only for this provider, and never counts as gone."""
        return frozenset(self.kinds)

    def unreadable(self, kind: str) -> frozenset[str]:
        """Input keys of ``kind`` the hypervisor cannot report back (a volume's source or clone, a pool's built and
        made_dirs, a cloud-init seed's contents), which ``read_all`` leaves out and refresh takes from state. Every
        other key a recorded object has and the read lacks is reported missing, so the plan shows it as drift."""
        return frozenset()

    @abstractmethod
    def read_all(self) -> list[Live]:
        """Every object of the managed kinds on the hypervisor, read in bulk."""

    @abstractmethod
    def diff(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
        """Fields that differ, each saying whether the change forces a replacement."""

    def kept_outputs(self, kind: str) -> frozenset[str]:
        """Outputs an in-place change of ``kind`` leaves as they are, which the plan can show (a restarted VM keeps its
        UUID); every other output of an object whose change ``changes_outputs`` is known only after apply."""
        return frozenset()

    @abstractmethod
    def create(self, request: CreateRequest) -> Live:
        """Create the object and return it as read back."""

    @abstractmethod
    def update(self, request: UpdateRequest) -> Live:
        """Change the object in place (only fields ``diff`` did not mark as forcing a replacement)."""

    @abstractmethod
    def delete(self, request: DeleteRequest) -> None:
        """Remove the object; deleting one that is already gone is not an error."""

    @property
    def reaches_guests(self) -> bool:
        """Whether the machine running crane can reach the guests' addresses (so that configuration, such as an
        Ansible run over SSH, can run from it). False unless the provider knows better."""
        return False

    def check(self, kind: str, properties: dict[str, Any]) -> list[str]:
        """What the hypervisor would refuse only when apply gets there (a missing storage pool, a kernel file that
        is not there), found before anything changes. Called after ``read_all`` for what a plan creates or updates."""
        return []

    def replacement_name(self, kind: str, physical: str, properties: dict[str, Any]) -> str:
        """The name under which a replacement can be created while the old object still exists
        (``create_before_destroy``); raise ``ProviderError`` saying why when this provider cannot."""
        raise ProviderError(f"this provider cannot create a new {kind} before destroying the old one")

    def planned_elsewhere(self, kind: str, properties: dict[str, Any]) -> None:
        """An object of ``kind`` that the plan makes or changes through another endpoint sharing the kind with this
        one (crane_iac/sharing.py), told before the checks of what depends on it: a later ``check`` counts it as
        there (a volume here in a storage pool the plan makes through the other endpoint)."""

    def remark(self, kind: str, properties: dict[str, Any]) -> str | None:
        """What the plan should say of creating or changing this object beyond its fields (a configuration run
        that will be skipped because no host can be reached), or None."""
        return None

    def warnings(self, kind: str, properties: dict[str, Any]) -> list[str]:
        """What the plan should warn of in an object the stack declares, whether it changes or not (a container on a
        stale template); [] when nothing. Called after ``read_all``; it must not change anything."""
        return []

    def checkpoint(self) -> None:
        """Make every mutation so far durable before crane records it in state (a no-op on real hosts)."""

    def close(self) -> None:
        """Release the connection."""


def changed_fields(
    before: dict[str, Any], after: dict[str, Any], rules: Mapping[str, Any],
    output_fields: frozenset[str] = frozenset(), notes: Mapping[Reach, str] | None = None,
) -> list[FieldChange]:
    """A generic diff: ``rules[field]`` is a ``Reach`` or a callable (before, after) returning one, and a field with no
    rule forces a replacement; ``notes`` are the provider's words for the plan, by reach."""
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        rule = rules.get(key, Reach.REPLACE)
        how = Reach(rule(old, new) if callable(rule) else rule)
        # an in-place change of an output field, or any change that restarts the guest, changes the outputs
        changes.append(FieldChange(key, old, new, how, changes_outputs=key in output_fields or how is Reach.RESTART,
                                   note=(notes or {}).get(how, "")))
    return changes
