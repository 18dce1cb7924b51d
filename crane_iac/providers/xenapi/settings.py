"""A XenAPI endpoint's own keys in crane.toml (beside ``type`` and ``uri``, the pool master's URL). The password
is never one of them: ``password_env`` names an environment variable holding it, ``password_file`` a file
(exactly one of the two). crane.toml's loader validates these keys with this model whenever the project loads;
whether the variable is set or the file readable is asked only when the endpoint is opened (``credentials``), so
that ``crane validate`` or ``crane state list`` runs without the password."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crane_iac.errors import SettingError

#: the name of an environment variable (POSIX: letters, digits and underscores, not starting with a digit)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class XenApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: the XenServer user crane logs in as (a local root, or an AD user with the pool-operator role at least)
    username: str = Field(default="root", min_length=1)
    #: a path to a file whose first line is the password (relative to the project directory)
    password_file: str | None = None
    #: the name of an environment variable holding the password
    password_env: str | None = Field(default=None, validate_default=True)
    #: verify the pool master's TLS certificate (against the system's CAs, or ``ca_cert``)
    verify_tls: bool = True
    #: a PEM file of the CA (or the self-signed certificate) the pool master's certificate must chain to
    ca_cert: str | None = None
    #: the SHA-256 fingerprint of the pool master's certificate (hex, colons allowed): pins a self-signed certificate
    pinned_sha256: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")
    #: the template VMs are made from (its name_label)
    template: str = Field(default="Debian Bookworm 12", min_length=1)
    #: the SR new VMs' disks go in (its name_label): ``VM.copy`` there; None: ``VM.clone``, in the template's SR
    default_sr: str | None = None
    #: seconds apply waits for a started VM's guest tools to report its addresses (0: do not wait)
    address_timeout: float = Field(default=300.0, ge=0, le=3600)
    #: seconds a guest gets to shut down cleanly before it is powered off
    shutdown_timeout: float = Field(default=60.0, ge=0, le=3600)
    #: seconds a long call (a clone, a start) may take before apply gives up on it and cancels its task
    task_timeout: float = Field(default=1800.0, gt=0, le=86400)
    #: the pool's asynchronous tasks crane runs at once (clones, copies, starts)
    max_tasks: int = Field(default=8, ge=1, le=256)
    #: whether the machine running crane reaches the guests' addresses (for configuration runs)
    reach_guests: bool = False

    @field_validator("password_env")
    @classmethod
    def _one_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        given_file = info.data.get("password_file") is not None
        if value is not None and given_file:
            raise ValueError("give password_env or password_file, not both")
        if value is None and not given_file:
            raise ValueError("the password's source is missing: set password_env = \"NAME\" (an environment "
                             "variable holding it) or password_file = \"PATH\"; crane.toml never holds the password")
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable's name (write the variable's name, "
                             "never the password itself)")
        return value


def credentials(settings: XenApiSettings, project_dir: Path) -> str:
    """The password, from the environment variable or the file the settings name; a ``SettingError`` if neither
    gives one. Never logged, never part of an error message."""
    if settings.password_env is not None:
        password = os.environ.get(settings.password_env)
        if not password:
            raise SettingError("password_env", f"the environment variable {settings.password_env} is not set (or "
                               "empty); export it with the XenServer user's password before running crane")
        return password
    assert settings.password_file is not None
    path = Path(settings.password_file).expanduser()
    path = path if path.is_absolute() else project_dir / path
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SettingError("password_file", f"cannot read {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise SettingError("password_file", f"{path} is empty; its first line must be the password")
    return lines[0]
