"""crane.toml: the project's stacks, where their state lives, their provider and typed variables.

    state = "sqlite:///.crane/state.db"     # default; relative paths are from the project root;
                                            # the environment's CRANE_STATE_URL overrides it
    default_stack = "demo"                  # the stack without --stack (the environment's CRANE_STACK wins)

    [stacks.demo]
    file = "stacks/demo.py"
    uri = "qemu:///system"                  # the stack's default endpoint; omit for the local sandbox
    [stacks.demo.providers.dc2]             # more endpoints (Terraform's provider aliases): resources
    uri = "qemu+ssh://root@dc2/system"      # choose one with provider="dc2"; no uri: a sandbox of its own
    [stacks.demo.vars]
    web_count = { type = "int", default = 2 }
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails

from crane_iac.errors import ConfigError
from crane_iac.objects import DEFAULT_ENDPOINT
from crane_iac.providers.registry import settings_model
from crane_iac.tomlfile import key_line, line_of, read_toml, toml_type, var_line

CONFIG_NAME = "crane.toml"
VarType = Literal["str", "int", "float", "bool"]
_CASTS: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": None}


class VariableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: VarType = "str"
    default: str | int | float | bool | None = None
    description: str = ""

    def check_default(self) -> Any:
        """The default as written, if it is of the declared type (an int does for a float), or raise ValueError:
        crane.toml is typed, so ``default = "600"`` for an int is a mistake, not a value to convert."""
        value = self.default
        wanted: tuple[type, ...] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}[self.type]
        if isinstance(value, wanted) and not (isinstance(value, bool) and self.type != "bool"):
            return float(value) if isinstance(value, (int, float)) and self.type == "float" else value
        article = "an" if self.type == "int" else "a"
        raise ValueError(f"the default {value!r} is {toml_type(value)}, not {article} {self.type}")

    def cast(self, raw: Any) -> Any:
        """Convert ``raw`` (from TOML or ``--var``) to the declared type, or raise ValueError."""
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"true", "1", "yes"}:
                return True
            if text in {"false", "0", "no"}:
                return False
            raise ValueError(f"{raw!r} is not a bool (true/false)")
        if self.type in {"int", "float"} and isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not an {self.type}")
        try:
            return _CASTS[self.type](raw)
        except (TypeError, ValueError):
            raise ValueError(f"{raw!r} is not a{'n' if self.type == 'int' else ''} {self.type}") from None


def _did_you_mean(name: str, known: Any) -> str:
    """``; did you mean 'file'?``, or what is known, for an unknown ``name``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; declared: {', '.join(sorted(known)) or 'none'}"


_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class EndpointConfig(BaseModel):
    """One hypervisor endpoint: a provider type and where it is (no ``uri``: a sandbox of its own). Every other key
    is the type's own (libvirt: domain_type, address_timeout, shutdown_timeout, reach_guests), checked by the type's
    ``Settings`` model when the project loads (providers/registry.py)."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str = "libvirt"
    uri: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The type's own keys, as crane.toml writes them."""
        return dict(self.model_extra or {})


class StackConfig(BaseModel):
    """One stack. Its default endpoint is written on the stack itself: ``provider`` is its type, ``uri`` where it is,
    and a key the stack does not know is that type's own (as on an endpoint)."""

    model_config = ConfigDict(extra="allow", strict=True)
    file: str
    provider: str = "libvirt"
    uri: str | None = None
    #: named endpoints besides the default one
    providers: dict[str, EndpointConfig] = Field(default_factory=dict)
    vars: dict[str, VariableSpec] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _endpoint_names(cls, value: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        for name in value:
            if not _ENDPOINT_NAME.match(name):
                raise ValueError(f"endpoint name {name!r}: use a lower-case letter, then letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _one_default(self) -> StackConfig:
        if DEFAULT_ENDPOINT in self.providers and (self.model_fields_set & {"provider", "uri"} or self.model_extra):
            raise ValueError("the default endpoint is declared twice: on the stack (uri, provider, ...) and as "
                             "[providers.default]; keep one")
        return self

    def endpoints(self) -> dict[str, EndpointConfig]:
        """Every endpoint by name: ``default`` (from the stack's own settings unless declared) and the named ones."""
        default = EndpointConfig(type=self.provider, uri=self.uri, **(self.model_extra or {}))
        return {DEFAULT_ENDPOINT: default, **self.providers}


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    state: str = "sqlite:///.crane/state.db"
    stacks: dict[str, StackConfig]
    #: the stack a command uses without ``--stack`` (or ``CRANE_STACK``) when several are declared
    default_stack: str | None = None

    @field_validator("default_stack")
    @classmethod
    def _known_default(cls, value: str | None, info: ValidationInfo) -> str | None:
        stacks = info.data.get("stacks", {})
        if value is not None and stacks and value not in stacks:
            raise ValueError(f"no stack {value!r}{_did_you_mean(value, stacks)}")
        return value


class Project:
    """A loaded crane.toml and the directory it sits in."""

    def __init__(self, root: Path, config: ProjectConfig, path: Path) -> None:
        self.root = root
        self.config = config
        self.path = path

    def stack(self, name: str | None) -> tuple[str, StackConfig]:
        """The stack a command works on: ``name`` (``--stack``), else the environment's ``CRANE_STACK``, else
        crane.toml's ``default_stack``, else the only one declared."""
        stacks = self.config.stacks
        declared = ", ".join(sorted(stacks))
        given = f"--stack {name}"
        if name is None and os.environ.get("CRANE_STACK"):
            name = os.environ["CRANE_STACK"]
            given = f"CRANE_STACK={name}"
        if name is None:
            if self.config.default_stack is not None:
                return self.config.default_stack, stacks[self.config.default_stack]
            if len(stacks) == 1:
                return next(iter(stacks.items()))
            raise ConfigError(f"{self.path}: several stacks are declared ({declared}) and none is the default; "
                              f"choose one with --stack NAME, or set default_stack = \"NAME\" at the top of "
                              f"{CONFIG_NAME}")
        if name not in stacks:
            raise ConfigError(f"{given}: {self.path} declares no stack {name!r}{_did_you_mean(name, stacks)}")
        return name, stacks[name]

    def state_url(self) -> str:
        """Where state lives: ``CRANE_STATE_URL`` from the environment, else crane.toml's ``state``."""
        url = os.environ.get("CRANE_STATE_URL") or self.config.state
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str(self.root / url.removeprefix("sqlite:///"))
        return url

    def resolve_vars(self, stack: StackConfig, overrides: dict[str, str]) -> dict[str, Any]:
        """The stack's variables: ``--var`` values, else defaults, cast to their declared types.

        Every problem is reported at once (one ConfigError, a line each) naming crane.toml's line that declares the
        variable and the ``--var`` that would fix it.
        """
        name_of_stack = next((n for n, s in self.config.stacks.items() if s is stack), "")
        try:
            text = self.path.read_text()
        except OSError:
            text = ""
        problems: list[str] = []
        for name in sorted(set(overrides) - set(stack.vars)):
            close = difflib.get_close_matches(name, list(stack.vars), n=1)
            hint = f"did you mean {close[0]}?" if close else f"it declares {', '.join(sorted(stack.vars)) or 'none'}"
            problems.append(f"--var {name}: not a variable of this stack in {self.path}; {hint}")
        values: dict[str, Any] = {}
        for name, spec in stack.vars.items():
            line = var_line(text, name_of_stack, name)
            where = f"{self.path}:{line}" if line else str(self.path)
            raw = overrides.get(name, spec.default)
            fix = f"pass --var {name}=VALUE ({spec.type})"
            if raw is None:
                problems.append(f"{where}: variable {name!r} has no default; {fix}")
                continue
            try:
                values[name] = spec.cast(raw) if name in overrides else spec.check_default()
            except ValueError as exc:
                if name in overrides:
                    problems.append(f"{where}: variable {name!r}: {exc}, as given on the command line; {fix}")
                else:
                    problems.append(f"{where}: variable {name!r}: {exc}; fix its default or {fix}")
        if len(problems) == 1:
            raise ConfigError(problems[0])
        if problems:
            raise ConfigError(f"{len(problems)} problems with the stack's variables:\n  " + "\n  ".join(problems))
        return values


def find_project(start: Path) -> Path:
    for directory in (start, *start.parents):
        if (directory / CONFIG_NAME).is_file():
            return directory / CONFIG_NAME
    raise ConfigError(f"no {CONFIG_NAME} in {start} or any parent directory; "
                      "create one (see docs/reference/crane-toml.md)")


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose key ``loc`` ends at (``("stacks", "demo", "fiel")`` → StackConfig), or None."""
    model: Any = ProjectConfig
    annotation: Any = None
    for part in loc[:-1]:
        if model is not None:
            field = model.model_fields.get(str(part))
            annotation, model = (field.annotation if field else None), None
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model if isinstance(model, type) else None


def _close_keys(loc: tuple[int | str, ...]) -> list[str]:
    model = _model_at(loc)
    return difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1) if model else []


def _config_message(err: ErrorDetails) -> str:
    """A pydantic error in crane.toml's terms: an unknown key with the one meant, a value with its TOML type."""
    kind, value, ctx = err["type"], err["input"], err.get("ctx", {})
    if kind == "extra_forbidden":
        close = _close_keys(err["loc"])
        model = _model_at(err["loc"])
        known = ", ".join(sorted(model.model_fields)) if model else ""
        return f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key; the keys here are {known}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"expected one of {ctx['expected']}, got {value!r}"
    wanted = {"string_type": "a string", "int_type": "an integer", "float_type": "a number", "bool_type":
              "a boolean (true or false)", "dict_type": "a table", "model_type": "a table"}.get(kind)
    if wanted:
        return f"expected {wanted}, got {toml_type(value)} {value!r}"
    return str(err["msg"]).removeprefix("Value error, ")


def load_project(path: Path) -> Project:
    """Read and validate crane.toml, each endpoint's own keys by its provider type's model; every problem at once,
    each naming the file, the line and the key."""
    text, data = read_toml(path, str(path))
    problems: list[tuple[int, str]] = []
    suggested: set[tuple[int | str, ...]] = set()  # a key the suggestion for an unknown one names is not missing too

    def report(loc: tuple[int | str, ...], message: str) -> None:
        line = key_line(text, [str(p) for p in loc])
        where = f"{path}:{line}" if line else str(path)
        problems.append((line or 0, f"{where}: {'.'.join(str(p) for p in loc) or 'top level'}: {message}"))

    for loc, type_name, settings, own in _endpoint_settings(data):
        for key, message, close in _settings_problems(type_name, settings, own):
            report((*loc, key), message)
            suggested.update((*loc, c) for c in close)
    config: ProjectConfig | None = None
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        suggested |= {(*e["loc"][:-1], close) for e in errors if e["type"] == "extra_forbidden"
                      for close in _close_keys(e["loc"])}
        for err in errors:
            if err["type"] == "missing" and tuple(err["loc"]) in suggested:
                continue
            report(tuple(err["loc"]), _config_message(err))
    if problems or config is None:
        raise ConfigError("\n".join(text for _, text in sorted(problems, key=lambda p: p[0])))
    return Project(path.parent.resolve(), config, path)


def _endpoint_settings(data: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str, dict[str, Any], set[str]]]:
    """Every endpoint crane.toml writes, from the raw table (so that its keys are checked even where the rest does
    not validate): where it is, its provider type, the keys that are the type's own, and the keys crane knows
    there (a stack's default endpoint is written on the stack)."""
    stacks = data.get("stacks")
    for name, stack in (stacks.items() if isinstance(stacks, dict) else ()):
        if not isinstance(stack, dict):
            continue
        known = set(StackConfig.model_fields)
        yield (("stacks", name), str(stack.get("provider", "libvirt")),
               {k: v for k, v in stack.items() if k not in known}, known)
        endpoints = stack.get("providers")
        for endpoint, table in (endpoints.items() if isinstance(endpoints, dict) else ()):
            if isinstance(table, dict):
                known = set(EndpointConfig.model_fields)
                yield (("stacks", name, "providers", endpoint), str(table.get("type", "libvirt")),
                       {k: v for k, v in table.items() if k not in known}, known)


def _settings_problems(type_name: str, settings: dict[str, Any], own: set[str]) -> list[tuple[str, str, list[str]]]:
    """What is wrong with an endpoint's own keys for its provider type: (key, message, the keys suggested)."""
    try:
        model = settings_model(type_name)
    except ConfigError as exc:
        return [("type" if "type" in own and "provider" not in own else "provider", str(exc), [])]
    fields = set(model.model_fields) if model is not None else set()
    problems: list[tuple[str, str, list[str]]] = []
    suggested: set[str] = set()
    for key in sorted(set(settings) - fields):
        close = difflib.get_close_matches(key, sorted(fields | own), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the keys here are {', '.join(sorted(fields | own))}"
        problems.append((key, f"unknown key; {hint}", close))
        suggested.update(close)
    if model is not None:
        try:
            model.model_validate({k: v for k, v in settings.items() if k in fields})
        except ValidationError as exc:
            problems.extend((".".join(str(p) for p in err["loc"]), _config_message(err), [])
                            for err in exc.errors() if not (err["type"] == "missing" and err["loc"][0] in suggested))
    return problems


def read_var_file(path: Path) -> dict[str, Any]:
    """Variables from a TOML file of ``name = value`` lines (``--var-file``); typed as crane.toml declares them."""
    text, data = read_toml(path, f"--var-file {path}")
    nested = [k for k, v in data.items() if isinstance(v, (dict, list))]
    if nested:
        raise ConfigError(f"{path}:{line_of(text, nested[0])}: {nested[0]}: a variable's value is a string, number "
                          "or boolean")
    return data
