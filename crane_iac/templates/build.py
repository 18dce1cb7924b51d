"""``crane template build`` for containers, on a real host crane runs on (as root): the template's ext4 image
mounted under a writable overlay over its base (templates/layers.py), a libvirt LXC container running on that root
(no NIC: it shares the host's network, so a playbook can fetch packages), the user's playbook run in it by
ansible-runner through the ``crane_nsenter`` connection plug-in, the container stopped and removed, and the layer
(what the playbook added) kept with a manifest. A failure leaves nothing behind: no container, no mount, no
half-built template.

The sandbox (libvirt's test driver) runs no process: a build there is refused with that reason."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import sys
import tempfile
import time
import xml.sax.saxutils as su
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crane_iac.extras import require
from crane_iac.templates import digests, layers
from crane_iac.templates.library import LAYER_IMAGE, Library, TemplateError, base_digest, check_name
from crane_iac.templates.manifest import Base, Manifest, Playbook

Progress = Callable[[str], None]
PLUGINS = Path(__file__).parent / "plugins" / "connection"
#: the build container's first process: it only waits while the playbook runs beside it
BUILD_INIT = ("/bin/sh", "-c", "while :; do sleep 3600; done")
_CONFIG = """\
[defaults]
gathering = explicit
retry_files_enabled = False
deprecation_warnings = False
nocows = True
remote_tmp = /tmp/.ansible-tmp
local_tmp = {dir}/local
"""


@dataclass
class BuildRequest:
    """What ``crane template build`` was asked for."""

    name: str
    base: str
    playbook: Path
    variables: dict[str, str] = field(default_factory=dict)
    public: bool = False
    size_gib: int = 8
    memory_mib: int = 1024
    timeout: int = 1800


def check_build(conn: Any, library: Library, request: BuildRequest, *, driver: str, uri: str, what: str,
                mounts: str) -> str:
    """The template's name, once the build can start: on libvirt's ``driver`` (``uri``, a real host, not the
    sandbox), as root (the build ``mounts`` on this host), a name the library does not hold and a playbook that is
    a file; else a TemplateError saying what to do. ``what``: why it needs that driver."""
    name = check_name(request.name)
    if conn.getType() == "Test":
        raise TemplateError("the sandbox runs no process, so no playbook can run in it: build templates on a real "
                            f"host (crane template build ... --uri {uri}, as root on that host)")
    if conn.getType() != driver:
        raise TemplateError(f"{conn.getURI()} is not libvirt's {driver} driver: {what} (--uri {uri})")
    if os.geteuid() != 0:
        raise TemplateError(f"{mounts}: run it as root")
    if library.exists(name):
        raise TemplateError(f"template {name!r} exists in {library.directory}; remove it first "
                            f"(crane template rm {name}) or choose another name")
    if not request.playbook.is_file():
        raise TemplateError(f"playbook {request.playbook} is not a file")
    return name


def build_container_template(conn: Any, library: Library, request: BuildRequest,
                             progress: Progress = lambda _line: None) -> Manifest:
    """Build ``request.name`` into ``library`` on the host of ``conn`` (libvirt's LXC driver); its manifest."""
    name = check_build(conn, library, request, driver="LXC", uri="lxc:///system",
                       what="a container template builds in a container",
                       mounts="a container template build mounts its layer and overlay on this host")
    if request.base.startswith("/"):
        if not Path(request.base).is_dir():
            raise TemplateError(f"base {request.base!r} is not a directory on this host (a container's base is a "
                                "root directory, '/' being this host's own, or a template's name)")
        base = Base("dir", request.base, base_digest("dir", request.base))
        parents: list[Path] = []
        bottom = request.base
    else:
        parents, bottom = library.layers(request.base)
        base = Base("template", request.base, library.manifest(request.base).content_digest)
    partial = library.directory / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build_name = f".{name}.partial"
    domain = None
    try:
        image = partial / LAYER_IMAGE
        layers.make_image(image, request.size_gib)
        root = layers.build_root(build_name, image, parents, bottom)
        before = digests.packages(layers.view(root))
        progress(f"template {name}: building on {request.base} in {root}")
        domain = _start_container(conn, f"crane-build-{name}", root, request.memory_mib)
        pid = _first_process(domain)
        run_playbook(request, {"ansible_connection": "crane_nsenter", "crane_nsenter_pid": pid}, progress)
        added = digests.added_packages(before, digests.packages(layers.view(root)))
        _stop(domain)
        domain = None
        layers.release_build(build_name)
        content = _layer_digest(image, build_name)
        manifest = Manifest(
            name=name, kind="container", base=base,
            playbook=Playbook(str(request.playbook.resolve()), digests.file_digest(request.playbook)),
            variables=dict(request.variables), packages=added,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            built_by=f"{getpass.getuser()}@{socket.gethostname()}", content_digest=content, public=request.public)
        (partial / "manifest.json").write_text(manifest.to_json())
        partial.rename(library.path(name))
        return manifest
    finally:
        if domain is not None:
            _stop(domain)
        layers.release_build(build_name)
        shutil.rmtree(partial, ignore_errors=True)


def _layer_digest(image: Path, name: str) -> str:
    where = layers.mount_layer(image, name)
    try:
        return digests.tree_digest(layers.view(where / "upper"))
    finally:
        layers.release_unused_layers()


def _domain_xml(name: str, root: Path, memory_mib: int) -> str:
    args = "".join(f"<initarg>{su.escape(a)}</initarg>" for a in BUILD_INIT[1:])
    ram = "".join(f"<filesystem type='ram'><source usage='{memory_mib * 1024}' units='KiB'/><target dir='{d}'/>"
                  "</filesystem>" for d in ("/run", "/tmp"))
    return (f"<domain type='lxc'><name>{su.escape(name)}</name><memory unit='KiB'>{memory_mib * 1024}</memory>"
            f"<os><type>exe</type><init>{BUILD_INIT[0]}</init>{args}</os><devices>"
            f"<filesystem type='mount'><source dir='{su.escape(str(root))}'/><target dir='/'/></filesystem>{ram}"
            "<console type='pty'/></devices></domain>")


def _start_container(conn: Any, name: str, root: Path, memory_mib: int) -> Any:
    """A transient container on ``root`` (gone when destroyed); one left by a killed build is removed first."""
    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        conn.lookupByName(name).destroy()
    return conn.createXML(_domain_xml(name, root, memory_mib), 0)


def _first_process(domain: Any, timeout: float = 30.0) -> int:
    """The host PID of the container's first process: the child of its libvirt_lxc controller (the domain's ID)."""
    controller = domain.ID()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == controller and (entry / "cmdline").read_bytes().startswith(BUILD_INIT[0].encode()):
                    return int(entry.name)
        time.sleep(0.05)  # the controller starts its init a moment after libvirt reports the domain running
    raise TemplateError(f"the build container {domain.name()} started no first process within {timeout:.0f} s")


def _stop(domain: Any) -> None:
    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        domain.destroy()


def run_playbook(request: BuildRequest, connection: dict[str, Any], progress: Progress,
                 scratch: Path | None = None) -> None:
    """The playbook on one host, ``template``, reached with ``connection`` (its connection variables: crane_nsenter
    into a container, crane_chroot into a disk image's root); a TemplateError naming the first failed task.
    ansible-runner's directory is made in ``scratch`` when given (a workspace a killed build's successor removes)."""
    ansible_runner = require("ansible_runner", "a template build")
    run_dir = Path(tempfile.mkdtemp(prefix="crane-template-", dir=scratch))
    failures: list[str] = []

    def events(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        task = str(data.get("task", "")).strip()
        kind = event.get("event", "")
        res: dict[str, Any] = data["res"] if isinstance(data.get("res"), dict) else {}
        if kind == "runner_on_ok":
            progress(f"template {request.name}: {task}: {'changed' if res.get('changed') else 'ok'}")
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            message = str(res.get("msg") or res.get("stderr") or "failed").strip().splitlines()
            failures.append(f"task '{task}': {message[-1] if message else 'failed'}")
            progress(f"template {request.name}: {task}: failed")
        return False

    try:
        (run_dir / "local").mkdir()
        (run_dir / "ansible.cfg").write_text(_CONFIG.format(dir=run_dir))
        inventory = {"all": {"hosts": {"template": {
            **connection, "ansible_python_interpreter": "/usr/bin/python3"}}}}
        bin_dir = Path(sys.executable).parent
        runner = ansible_runner.run(
            private_data_dir=str(run_dir), playbook=str(request.playbook.resolve()), inventory=inventory,
            extravars=dict(request.variables),
            envvars={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                     "ANSIBLE_CONFIG": str(run_dir / "ansible.cfg"), "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS),
                     "ANSIBLE_NOCOLOR": "1"},
            event_handler=events, cancel_callback=lambda: False, quiet=True, timeout=request.timeout,
            rotate_artifacts=0)
        status, rc = runner.status, runner.rc
        stdout = Path(runner.config.artifact_dir) / "stdout"
        tail = stdout.read_text().strip().splitlines()[-6:] if status != "successful" and stdout.is_file() else []
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if failures:
        raise TemplateError(f"template {request.name}: the playbook {request.playbook} failed at {failures[0]}; "
                            "nothing was saved")
    if status != "successful":
        raise TemplateError(f"template {request.name}: ansible-playbook {request.playbook.name} {status} (exit "
                            f"status {rc}); nothing was saved: {' / '.join(tail)}")
