"""``crane template``: build, list, show and remove the templates of a host's template library
(docs/guides/templates.md)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from crane_iac.commands.base import AsJson, Chdir, app

if TYPE_CHECKING:
    from crane_iac.templates.library import Library

template_app = typer.Typer(help="The template library: container roots and images a playbook customised.",
                           no_args_is_help=True)
app.add_typer(template_app, name="template")

Uri = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--uri", metavar="URI", help="The libvirt host whose library (storage pool crane-templates) to use "
    "(default: the project's .crane/templates, the sandbox's).")]


def _project_crane_dir(chdir: Path) -> Path:
    from crane_iac.config import find_project
    from crane_iac.errors import ConfigError

    try:
        return find_project(chdir.resolve()).parent / ".crane"
    except ConfigError:
        return chdir.resolve() / ".crane"


def _library(chdir: Path, uri: str | None, *, create: bool = False) -> "tuple[Library, Any]":
    """The library and, with ``uri``, the open connection to its host (the caller closes it)."""
    from crane_iac.templates.library import DEFAULT_DIR, LIBRARY_POOL, Library

    default = _project_crane_dir(chdir) / DEFAULT_DIR
    if uri is None:
        return Library(default), None
    import libvirt

    from crane_iac.errors import CraneError
    from crane_iac.providers.libvirt.copies import pool_dir
    from crane_iac.providers.libvirt.snapshots import library_pool

    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise CraneError(f"cannot connect to {uri}: {exc.get_error_message()}") from None
    try:
        if create:
            return Library(pool_dir(library_pool(conn, default))), conn
        try:
            pool = conn.storagePoolLookupByName(LIBRARY_POOL)
        except libvirt.libvirtError:
            return Library(default), conn
        return Library(pool_dir(pool)), conn
    except BaseException:
        conn.close()
        raise


def _users(chdir: Path, name: str) -> list[str]:
    """``stack: address`` of each resource in the project's state that runs on template ``name``."""
    from crane_iac.config import find_project, load_project
    from crane_iac.engine.workspace import Workspace
    from crane_iac.errors import ConfigError

    try:
        stacks = list(load_project(find_project(chdir.resolve())).config.stacks)
    except ConfigError:
        return []
    if not stacks:
        return []
    with Workspace.open(chdir, stacks[0]) as ws:
        store = ws.store
        return [f"{stack}: {rec.address}" for stack in store.stacks()
                for rec in store.read(stack).resources.values() if rec.properties.get("template") == name]


@template_app.command("build")
def template_build(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new template's name.")],
    base: Annotated[str, typer.Option("--from", metavar="BASE",
                                      help="A root directory ('/' is this host's own), a disk image (a qcow2 "
                                      "or raw file, or POOL/VOLUME), or a template's name.")],
    playbook: Annotated[Path, typer.Option("--playbook", metavar="FILE", help="The Ansible playbook to run in it.")],
    var: Annotated[Optional[list[str]], typer.Option("--var", metavar="NAME=VALUE",  # noqa: UP045
                                                     help="A playbook variable (repeatable).")] = None,
    public: Annotated[bool, typer.Option("--public", metavar="", help="Mark it for other projects to use.")] = False,
    size_gib: Annotated[int, typer.Option("--size-gib", metavar="N", min=1,
                                          help="Room for what the playbook adds to a container's layer (a "
                                          "sparse image); a disk image's template keeps its base's size.")] = 8,
    uri: Uri = None, chdir: Chdir = Path("."),
) -> None:
    """Run PLAYBOOK on BASE and save what it changed as template NAME, with its manifest: in a container on a
    root directory (--uri lxc:///system), or in a chroot of a disk image's file system (--uri qemu:///system)."""
    from crane_iac.templates.build import BuildRequest, build_container_template
    from crane_iac.templates.image_build import build_image_template, wants_image
    from crane_iac.templates.library import TemplateError

    variables = {}
    for item in var or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--var")
        variables[key] = value
    if uri is None:
        raise TemplateError("the sandbox runs no process, so no playbook can run in it: build templates on a real "
                            "host (--uri lxc:///system for a container root, --uri qemu:///system for a disk image, "
                            "as root on that host)")
    library, conn = _library(chdir, uri, create=True)
    try:
        request = BuildRequest(name, base, (chdir / playbook).resolve() if not playbook.is_absolute() else playbook,
                               variables, public, size_gib)
        build = build_image_template if wants_image(library, base) else build_container_template
        manifest = build(conn, library, request, progress=print)
        conn.storagePoolLookupByName("crane-templates").refresh(0)
    finally:
        conn.close()
    print(f"template {manifest.name}: {manifest.kind} template built on {manifest.base.ref} "
          f"({manifest.content_digest}); "
          f"{len(manifest.packages)} package(s) added")


@template_app.command("list")
def template_list(uri: Uri = None, chdir: Chdir = Path("."), as_json: AsJson = False) -> None:
    """The library's templates: name, kind, base, when built, and whether stale."""
    library, conn = _library(chdir, uri)
    try:
        rows = []
        for name in library.names():
            m = library.manifest(name)
            stale = library.stale(name)
            rows.append({"name": name, "kind": m.kind, "base": m.base.ref, "built_at": m.built_at,
                         "public": m.public, "stale": stale is not None})
    finally:
        if conn is not None:
            conn.close()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"No templates in {library.directory}.")
        return
    print(f"{'NAME':<24} {'KIND':<10} {'BASE':<24} {'BUILT':<26} STATE")
    for r in rows:
        print(f"{r['name']:<24} {r['kind']:<10} {r['base']:<24} {r['built_at']:<26} "
              f"{'stale' if r['stale'] else 'current'}{' (public)' if r['public'] else ''}")


@template_app.command("show")
def template_show(name: Annotated[str, typer.Argument(metavar="NAME")], uri: Uri = None, chdir: Chdir = Path("."),
                  as_json: AsJson = False) -> None:
    """A template's manifest and its lineage (the templates it was built on, down to its base)."""
    library, conn = _library(chdir, uri)
    try:
        chain = library.lineage(name)
        stale = library.stale(name)
    finally:
        if conn is not None:
            conn.close()
    top = chain[0]
    if as_json:
        print(json.dumps({"manifest": json.loads(top.to_json()), "lineage": [m.name for m in chain],
                          "stale": str(stale) if stale else None}, indent=2))
        return
    print(f"template {top.name} ({top.kind}) in {library.directory}")
    print(f"  content digest: {top.content_digest}")
    print(f"  playbook:       {top.playbook.path} ({top.playbook.digest})")
    print(f"  variables:      {json.dumps(top.variables, sort_keys=True)}")
    print(f"  packages added: {', '.join(top.packages) or 'none'}")
    print(f"  built:          {top.built_at} by {top.built_by}{' (public)' if top.public else ''}")
    if top.kind == "vm":
        backing = chain[1].name if len(chain) > 1 else top.base.ref
        print(f"  disk:           {library.path(top.name) / 'disk.qcow2'} ({top.disk_bytes} bytes, backed by "
              f"{backing})")
    print("lineage:")
    for depth, m in enumerate(chain):
        print(f"  {'  ' * depth}{m.name} ← built on {m.base.kind} {m.base.ref} ({m.base.digest})")
    print(str(stale) if stale else "state: current (every base as it was when built)")


@template_app.command("rm")
def template_rm(name: Annotated[str, typer.Argument(metavar="NAME")], uri: Uri = None,
                chdir: Chdir = Path(".")) -> None:
    """Remove a template; one a stack's state uses, or another template is built on, is refused."""
    from crane_iac.templates.library import TemplateError

    users = _users(chdir, name)
    if users:
        raise TemplateError(f"template {name!r} is in use by {', '.join(users)}; destroy or change "
                            f"{'it' if len(users) == 1 else 'them'} first")
    library, conn = _library(chdir, uri)
    try:
        library.remove(name)
        if conn is not None:
            conn.storagePoolLookupByName("crane-templates").refresh(0)
    finally:
        if conn is not None:
            conn.close()
    print(f"template {name}: removed")
