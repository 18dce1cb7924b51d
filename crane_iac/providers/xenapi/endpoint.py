"""The xenapi type as the provider registry sees it: the opener (``open_endpoint``), the endpoint's own crane.toml
keys (``Settings``) and the rules for the resources it serves (``validate_resource``). Two xenapi endpoints share
nothing crane knows of (each is a pool of its own). Loading a project reads the settings and the rules, so the SDK
is imported only when an endpoint is opened."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_iac.errors import SettingError
from crane_iac.providers.xenapi.settings import XenApiSettings as Settings
from crane_iac.providers.xenapi.settings import credentials
from crane_iac.providers.xenapi.validation import validate_resource

if TYPE_CHECKING:
    from crane_iac.providers.xenapi.provider import XenApiProvider

__all__ = ["Settings", "open_endpoint", "prepare", "validate_resource"]


def prepare() -> None:
    """Import the provider and the SDK before the connection's thread starts (the registry's ``prepare``); without
    the SDK installed, the opener says which extra to install."""
    import importlib.util

    if importlib.util.find_spec("XenAPI") is not None:
        import crane_iac.providers.xenapi.provider  # noqa: F401


def open_endpoint(settings: dict[str, Any], *, sandbox_dir: Path, mutating: bool,
                  lock_timeout: float = 0.0) -> XenApiProvider:
    """A session with the pool master at ``settings["uri"]``. ``sandbox_dir`` (under the project's .crane) gives
    the project directory, which a relative ``password_file`` is read from."""
    own = Settings.model_validate({k: v for k, v in settings.items() if k != "uri"})
    url = settings.get("uri")
    if not url:
        raise SettingError("uri", "a xenapi endpoint needs uri = \"https://<pool master>\"")
    if not str(url).startswith(("https://", "http://")):
        raise SettingError("uri", f"{url!r} is not a pool master's URL (https://<host>)")
    password = credentials(own, _project_dir(sandbox_dir))
    from crane_iac.extras import require

    require("XenAPI", "a xenapi endpoint")
    from crane_iac.providers.xenapi.provider import XenApiProvider

    return XenApiProvider(str(url), password, own)


def _project_dir(sandbox_dir: Path) -> Path:
    """The directory holding .crane (the sandbox's directory is .crane/<...>)."""
    for parent in (sandbox_dir, *sandbox_dir.parents):
        if parent.name == ".crane":
            return parent.parent
    return Path.cwd()
