"""A stack's endpoints opened for one run: a provider per endpoint name, connected and read in parallel."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from crane_iac.config import EndpointConfig
from crane_iac.errors import CraneError, SettingError
from crane_iac.heap import release_freed_memory
from crane_iac.objects import DEFAULT_ENDPOINT, Live
from crane_iac.providers.endpoint import Endpoint
from crane_iac.providers.registry import open_companions, open_provider, prepare_opening, sharing_rule
from crane_iac.sharing import NOTHING_SHARED, EndpointSharing


def sandbox_dir(state_dir: Path, name: str) -> Path:
    """Where an endpoint without a uri keeps its sandbox: ``.crane/`` for the default, ``.crane/sandboxes/NAME``."""
    return state_dir if name == DEFAULT_ENDPOINT else state_dir / "sandboxes" / name


def companion_dir(state_dir: Path, name: str) -> Path:
    """Where an endpoint's companions keep their files (an SSH key): ``.crane/endpoints/NAME/<companion>``."""
    return state_dir / "endpoints" / name


@dataclass
class Endpoints(Mapping[str, Endpoint]):
    """Endpoints (a hypervisor with its companions) by name, and which kinds they share."""

    providers: dict[str, Endpoint]
    types: dict[str, str]
    sharing: EndpointSharing = NOTHING_SHARED
    #: each declared endpoint's type and settings as records keep them (``recorded_config``)
    configs: dict[str, str] = field(default_factory=dict)
    #: opens an endpoint's former self from a record's ``endpoint_config`` (engine/retired.py): its name, the config
    opener: Callable[[str, str], Endpoint] | None = None

    def __getitem__(self, name: str) -> Endpoint:
        return self.providers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.providers)

    def __len__(self) -> int:
        return len(self.providers)

    def read_all(self) -> list[Live]:
        """Every endpoint's objects, read at once (one thread per endpoint), each tagged with its endpoint."""
        def read(name: str) -> list[Live]:
            lives = self.providers[name].read_all()
            for live in lives:
                live.endpoint = name
            return lives

        if len(self.providers) == 1:
            return read(next(iter(self.providers)))
        with ThreadPoolExecutor(len(self.providers), thread_name_prefix="crane-read") as pool:
            return [live for lives in pool.map(read, self.providers) for live in lives]

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


def endpoint_sharing(configs: Mapping[str, EndpointConfig]) -> EndpointSharing:
    """Which kinds the endpoints share, each pair of one provider type asked of its type's ``shared_kinds`` (no
    connection: it works for ``crane validate`` and at plan time from the URIs); two types share nothing."""
    pairs = []
    names = sorted(configs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if configs[a].type != configs[b].type:
                continue
            rule = sharing_rule(configs[a].type)
            if rule is not None:
                pairs.append((a, b, rule(_settings(configs[a]), _settings(configs[b]))))
    return EndpointSharing.from_pairs(pairs) if pairs else NOTHING_SHARED


def recorded_config(config: EndpointConfig) -> str:
    """An endpoint as a record keeps it: its type and crane.toml settings, canonical JSON. crane.toml holds no
    password (a xenapi endpoint names the variable or file it is in), and a URI's password is masked."""
    from crane_iac.state.base import mask_url

    data = config.model_dump()
    if data.get("uri"):
        data["uri"] = mask_url(str(data["uri"]))
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _settings(config: EndpointConfig) -> dict[str, object]:
    """An endpoint's keys as its provider type takes them: ``uri`` and the type's own."""
    return config.model_dump(exclude={"type"})


def open_endpoints(configs: Mapping[str, EndpointConfig], *, state_dir: Path, mutating: bool,
                   lock_timeout: float = 0.0, meanwhile: Callable[[], object] | None = None) -> Endpoints:
    """Connect to every endpoint at once, running ``meanwhile`` on this thread while they connect; if one fails
    (or ``meanwhile`` does), the others are closed and the error names the endpoint."""
    def connect(name: str, config: EndpointConfig | None = None) -> Endpoint:
        config = config or configs[name]
        settings = _settings(config)
        try:
            hypervisor = open_provider(config.type, settings, sandbox_dir=sandbox_dir(state_dir, name),
                                       mutating=mutating, lock_timeout=lock_timeout)
            try:
                companions = open_companions(hypervisor, state_dir=companion_dir(state_dir, name), mutating=mutating,
                                             project_dir=state_dir.parent)
            except BaseException:
                hypervisor.close()
                raise
            return Endpoint(hypervisor, companions)
        except SettingError as exc:
            exc.endpoint = name  # the workspace names its line in crane.toml
            raise
        except CraneError as exc:
            if len(configs) == 1:
                raise
            raise type(exc)(f"endpoint {name!r}: {exc}") from None

    names = list(configs)
    opened: dict[str, Endpoint] = {}
    errors: list[BaseException] = []
    for type_name in {config.type for config in configs.values()}:
        # each type's provider imported here, before ``meanwhile`` competes with the connections for the GIL
        prepare_opening(type_name)
    # the package both sides import while the endpoints connect: ``meanwhile`` runs the stack (its resource models),
    # a connection's thread the provider's kinds (which import the models' modules). Python 3.11 can fail two threads
    # that import a package and its modules at once with a _DeadlockError (CPython bpo-38884): imported whole here,
    # before any thread starts, it is only read from sys.modules after
    importlib.import_module("crane_iac.resources")
    with ThreadPoolExecutor(max(1, len(names)), thread_name_prefix="crane-connect") as pool:
        futures = {name: pool.submit(connect, name) for name in names}
        try:
            if meanwhile is not None:
                meanwhile()
        except BaseException as exc:
            errors.append(exc)
        for name, future in futures.items():
            try:
                opened[name] = future.result()
            except BaseException as exc:
                errors.append(exc)
    if errors:
        for provider in opened.values():
            provider.close()
        raise errors[0]
    def reopen(name: str, recorded: str) -> Endpoint:
        prepare_opening(json.loads(recorded)["type"])
        return connect(name, EndpointConfig.model_validate(json.loads(recorded)))

    return Endpoints(opened, {name: configs[name].type for name in names}, endpoint_sharing(configs),
                     {name: recorded_config(configs[name]) for name in names}, reopen)


D = TypeVar("D")
T = TypeVar("T")


@contextmanager
def connected(configs: Mapping[str, EndpointConfig], *, state_dir: Path, mutating: bool, lock_timeout: float = 0.0,
              read: bool = False, during: Callable[[], D] | None = None,
              meanwhile: Callable[[D | None], T] | None = None
              ) -> Iterator[tuple[Endpoints, T | None, list[Live] | None]]:
    """Connect to every endpoint, running ``during`` while they connect, then (with ``read``) read everything on them
    in the background while ``meanwhile`` runs with what ``during`` returned. Yields the endpoints, what
    ``meanwhile`` returned, and what was read (or None); closes the endpoints on the way out.

    Connecting to a big sandbox takes seconds in libvirt's C code, which leaves the GIL free: a plan imports what
    it needs and runs the stack then. Reading 10,000 objects (round trips to a real host, XML parsing on the
    sandbox) takes as long as running a big stack file, so ``meanwhile`` does what is left (a plan reads its
    state). What ``during`` holds is held through the connecting, which is the run's memory peak."""
    box: list[D] = []
    endpoints = open_endpoints(configs, state_dir=state_dir, mutating=mutating, lock_timeout=lock_timeout,
                               meanwhile=(lambda: box.append(_held(during))) if during is not None else None)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="crane-read") as pool:
            reading = pool.submit(endpoints.read_all) if read else None
            try:
                extra = meanwhile(box[0] if box else None) if meanwhile is not None else None
                lives = reading.result() if reading is not None else None
            except BaseException:
                if reading is not None:
                    reading.exception()  # let the read finish before the connections close
                raise
        yield endpoints, extra, lives
    finally:
        endpoints.close()


def _held(during: Callable[[], D]) -> D:
    """What ``during`` returns, with the pages its temporary objects used handed back before the connecting reaches
    its memory peak (for a 10,000-resource stack run, 8 of the 32 MB it adds there)."""
    try:
        return during()
    finally:
        release_freed_memory()
