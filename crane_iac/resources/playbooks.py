"""Where a configuration's playbook is (``crane:appdomain/lb.yml`` names one crane ships) and the digest that makes a
changed playbook, role or shipped helper file show in the plan as a configuration to run again. Read when a stack
loads (no I/O but reading files); a bad name is a ValueError, which the resource reports as a load error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

#: the prefix of a playbook shipped with crane: ``crane:<package>/<file>`` is crane_iac/<package>/playbooks/<file>
SHIPPED = "crane:"
#: Ansible's playbook-level search path: lookups and includes in a play or role find files here too
_PLAYBOOK_DIRS = ("templates", "files")


def shipped_dir(package: str = "appdomain") -> Path:
    """A crane package's own directory (its playbooks/ and files/ are package data)."""
    return Path(str(files(f"crane_iac.{package}")))


def resolve(playbook: str, project_dir: Path) -> Path:
    """The playbook file: ``crane:<package>/<file>`` from crane's own, an absolute path as it is, a relative one from
    the project's directory. A name that is neither is a ``ValueError`` saying which forms there are."""
    if playbook.startswith(SHIPPED):
        package, _, name = playbook[len(SHIPPED):].partition("/")
        if not package.isidentifier() or not name or ".." in Path(name).parts:
            raise ValueError(f"playbook {playbook!r}: a playbook shipped with crane is named "
                                f"'crane:<package>/<file>', as 'crane:appdomain/web.yml'")
        try:
            return shipped_dir(package) / "playbooks" / name
        except ModuleNotFoundError:
            raise ValueError(f"playbook {playbook!r}: crane has no package {package!r}") from None
    path = Path(playbook)
    return path if path.is_absolute() else project_dir / path


def _load_yaml(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, with libyaml's parser where PyYAML has it (several times faster)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _role_names(plays: Any) -> set[str] | None:
    """Roles a playbook's plays list, or None when it includes roles by name in its tasks (then all may be used)."""
    import yaml

    if not isinstance(plays, list):
        return None
    names: set[str] = set()
    for play in plays:
        if not isinstance(play, dict):
            return None
        for role in play.get("roles") or []:
            name = (role.get("role") or role.get("name")) if isinstance(role, dict) else role
            if not isinstance(name, str):
                return None
            names.add(name)
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            text = yaml.safe_dump(play.get(section) or [])
            if "include_role" in text or "import_role" in text:
                return None
    return names


def _role_dirs(playbook: Path, text: str) -> list[Path]:
    """The roles/ directories beside the playbook that it uses, with the roles those depend on (meta/main.yml)."""
    roles = playbook.parent / "roles"
    if not roles.is_dir():
        return []
    import yaml  # only a stack with configurations reads a playbook: PyYAML is not imported for the others

    try:
        names = _role_names(_load_yaml(text))
    except yaml.YAMLError as exc:
        raise ValueError(f"{playbook}: not a playbook: {exc}") from None
    if names is None:
        return [roles]
    seen: set[str] = set()
    while names - seen:
        name = sorted(names - seen)[0]
        seen.add(name)
        meta = roles / name / "meta" / "main.yml"
        if meta.is_file():
            deps = (_load_yaml(meta.read_text()) or {}).get("dependencies") or []
            names |= {d if isinstance(d, str) else str(d.get("role") or d.get("name")) for d in deps}
    return [roles / name for name in sorted(seen) if (roles / name).is_dir()]


def _files_under(directory: Path) -> Iterator[Path]:
    yield from sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def playbook_digest(playbook: str, project_dir: Path | None = None) -> str:
    """The sha256 of everything a run of ``playbook`` reads from disk: the playbook, the roles it uses (beside it in
    roles/), Ansible's playbook-level templates/ and files/, and for one of crane's the package's files/ (the
    helpers its roles copy, whose directory a run passes as ``crane_files_dir``). Computed when a stack loads."""
    path = resolve(playbook, project_dir or Path.cwd())
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"playbook {playbook!r}: cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256()
    digest.update(b"playbook\0" + text.encode() + b"\0")
    dirs = [*_role_dirs(path, text), *(path.parent / d for d in _PLAYBOOK_DIRS)]
    if playbook.startswith(SHIPPED):
        dirs.append(path.parent.parent / "files")
    for directory in dirs:
        if directory.is_dir():
            for file in _files_under(directory):
                digest.update(str(file.relative_to(path.parent.parent)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()
