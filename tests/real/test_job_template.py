"""A template's library used by a job, for real: ``crane template build`` runs a playbook that compiles a small C
library (tests/mpi/cranetest: a header and a .so, into /usr/local/include and /usr/local/lib, ldconfig) in a build
container on this host's root, and saves it as a container template; an MPICluster of 2 LXC nodes runs on that
template, and ``crane job run`` builds a program against the library on the head (``mpicc ... -lcranetest``) and
runs it as 4 ranks, each calling the library on its node; the result lands here. Then a job whose rank 3 (on node-2)
exits non-zero: crane's exit code is that rank's, the outputs and the log are fetched, and the cluster is released
as the job file says. A cluster larger than the host's memory is refused by the plan, before anything is made. The
tests of this module run in order on one project; the library (the pool crane-templates) is made in it and removed
at the end."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from crane_iac.templates import layers
from tests.conftest import CRANE, ProjectDir, assert_clean_error, ok
from tests.real.host import LXC_URI, LxcHost, lookup_pool, release_template_mounts, remove_library

PREFIX = "cjt-"
NET = "10.247.0"  # each module of tests/real has its own subnet
POOL_DIR = Path(f"/var/lib/{PREFIX}pool")
LIBRARY = "crane-templates"
TEMPLATE = f"{PREFIX}libs"
SOURCES = Path(__file__).resolve().parents[1] / "mpi" / "cranetest"
CLUSTER = f"{PREFIX}lib"
STACK = f'''
from crane_iac import MPICluster, Network, StoragePool

net = Network("{PREFIX}net", mode="isolated", ipv4="{NET}.0/24", dhcp=False)
pool = StoragePool("{PREFIX}pool", path="{POOL_DIR}")
MPICluster("{CLUSTER}", network=net, pool=pool, nodes=2, slots_per_node=2, memory_mib=256, template="{TEMPLATE}")
'''
#: a cluster whose nodes together ask for more memory than this host has (3 × 1 TiB)
TOO_BIG = f'''
from crane_iac import MPICluster, Network, StoragePool

net = Network("{PREFIX}big-net", mode="isolated", ipv4="10.248.0.0/24", dhcp=False)
pool = StoragePool("{PREFIX}big-pool", path="/var/lib/{PREFIX}big-pool")
MPICluster("{PREFIX}big", network=net, pool=pool, nodes=2, memory_mib=1048576)
'''


def playbook() -> str:
    """The template's playbook: the library's header and source written into the build container (their text
    inline, as JSON strings, which YAML reads as they are), the .so compiled there with the host's gcc, ldconfig."""
    header = json.dumps((SOURCES / "cranetest.h").read_text())
    source = json.dumps((SOURCES / "cranetest.c").read_text())
    return textwrap.dedent(f"""\
        - hosts: all
          tasks:
            - name: the library's source directory
              ansible.builtin.file:
                path: /usr/local/src/cranetest
                state: directory
                mode: "0755"
            - name: the header
              ansible.builtin.copy:
                dest: /usr/local/include/cranetest.h
                mode: "0644"
                content: {header}
            - name: the source
              ansible.builtin.copy:
                dest: /usr/local/src/cranetest/cranetest.c
                mode: "0644"
                content: {source}
            - name: the shared library
              ansible.builtin.command: >-
                gcc -shared -fPIC -O2 -I/usr/local/include -o /usr/local/lib/libcranetest.so
                /usr/local/src/cranetest/cranetest.c
            - name: the linker cache
              ansible.builtin.command: ldconfig
        """)


def job(project: ProjectDir, name: str, *, command: str, release: bool) -> Path:
    """A job file for usepi.c (linked against the template's library) on the cluster, the source next to it."""
    shutil.copy(SOURCES / "usepi.c", project.root / "usepi.c")
    path = project.root / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""\
        command = {command!r}
        release = {str(release).lower()}
        [cluster]
        name = "{CLUSTER}"
        [program]
        files = ["usepi.c"]
        build = "mpicc -O2 -Wall -o usepi usepi.c -lcranetest"
        [outputs]
        files = ["usepi.out"]
    """))
    return path


def ranks(out: str) -> Counter[tuple[str, str]]:
    """(host, the library's version it reported) of each rank, counted."""
    return Counter(re.findall(r"^rank \d+ of \d+ on (\S+) with (.+)$", out, re.M))


def sweep(conn: libvirt.virConnect, lxc: LxcHost, library_dir: Path | None = None) -> None:
    """What a failed run left: the containers and their roots, a half-built template, the library pool."""
    lxc.sweep(PREFIX)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(f"crane-build-{PREFIX}"):
            dom.destroy()
    release_template_mounts(TEMPLATE, [f"{CLUSTER}-{node}" for node in ("head", "node-1", "node-2")])
    if library_dir is None:
        return  # at the start: a library on this host is left as it is (the build uses it)
    pool = lookup_pool(conn, LIBRARY)
    if pool is None:
        return
    if pool_directory(pool) != library_dir:  # not this module's: only its template goes
        subprocess.run([*CRANE, "template", "rm", TEMPLATE, "--uri", LXC_URI], capture_output=True, check=False)
        return
    remove_library(pool)
    shutil.rmtree(library_dir, ignore_errors=True)


def pool_directory(pool: libvirt.virStoragePool) -> Path:
    """A storage pool's directory."""
    return Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "/")


@pytest.fixture(scope="module")
def project(lxc_host: LxcHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDir]:
    sweep(lxc_host.conn, lxc_host)
    p = ProjectDir(tmp_path_factory.mktemp("jobtemplate"))
    p.write_config(f"""
        default_stack = "hpc"

        [stacks.hpc]
        file = "stacks/hpc.py"
        uri = "{LXC_URI}"
        shutdown_timeout = 5

        [stacks.big]
        file = "stacks/big.py"
        uri = "{LXC_URI}"
    """)
    p.write_stack(STACK, "hpc.py")
    p.write_stack(TOO_BIG, "big.py")
    (p.root / "libs.yml").write_text(playbook())
    try:
        yield p
        p.crane("destroy", "--auto-approve", "--stack", "hpc", timeout=600)
    finally:
        sweep(lxc_host.conn, lxc_host, p.root / ".crane" / "templates")
        for directory in (layers.ROOTS, layers.LAYERS, layers.BUILDS, layers.RUN_DIR):  # empty by now
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_a_cluster_larger_than_the_hosts_memory_is_refused_by_the_plan(project: ProjectDir,
                                                                       lxc_host: LxcHost) -> None:
    total_mib = lxc_host.conn.getInfo()[1]
    planned = project.crane("plan", "--stack", "big")
    assert_clean_error(planned, f"mpicluster.{PREFIX}big/container.node-1: memory_mib: this container's 1048576 MiB",
                       f"the 3 guest(s) this plan makes or changes on {LXC_URI} to 3145728 MiB, more than the host's "
                       f"{total_mib} MiB")
    assert lxc_host.names(f"{PREFIX}big") == {"domains": [], "networks": [], "pools": [], "volumes": []}


def test_a_playbook_installs_a_library_into_a_container_template(project: ProjectDir) -> None:
    built = ok(project, "template", "build", TEMPLATE, "--from", "/", "--playbook", "libs.yml", "--uri", LXC_URI)
    assert "the shared library: changed" in built, built
    assert not Path("/usr/local/lib/libcranetest.so").exists()  # in the template's layer, not on this host
    assert not Path("/usr/local/include/cranetest.h").exists()
    shown = json.loads(ok(project, "template", "show", TEMPLATE, "--uri", LXC_URI, "--json"))
    assert shown["manifest"]["base"]["ref"] == "/" and shown["stale"] is None


def test_a_job_on_the_templates_cluster_links_against_the_library_and_calls_it_on_every_node(
        project: ProjectDir, lxc_host: LxcHost) -> None:
    path = job(project, "usepi", command="mpirun -np 4 --hostfile /srv/hostfile ./usepi 1e7 > usepi.out && "
                                         "cat usepi.out", release=False)
    done = project.crane("job", "run", str(path), timeout=900)
    print(done.out[-3000:], done.err[-3000:])
    assert done.code == 0, done.out + done.err
    assert "[3/6] build: built" in done.out
    out = (project.root / "results" / "usepi" / "usepi.out").read_text()
    # the 4 ranks ran on the 2 compute nodes, and each called the template's library there
    assert ranks(out) == {(f"{CLUSTER}-node-1", "libcranetest 1.0"): 2,
                          (f"{CLUSTER}-node-2", "libcranetest 1.0"): 2}, out
    found = re.search(r"^pi = ([0-9.]+)$", out, re.M)
    assert found and abs(float(found.group(1)) - 3.141592653589793) < 1e-9, out
    assert not Path("/usr/local/lib/libcranetest.so").exists()
    assert len(lxc_host.names(CLUSTER)["domains"]) == 3  # release = false: kept for the next job
    assert_clean_error(project.crane("template", "rm", TEMPLATE, "--uri", LXC_URI),
                       f"template {TEMPLATE!r} is in use by", f"{CLUSTER}")


def test_a_job_whose_rank_fails_on_one_node_exits_with_its_code_fetches_and_releases_the_cluster(
        project: ProjectDir, lxc_host: LxcHost) -> None:
    # rank 3 runs on node-2 (the hostfile's slots fill node-1 first); it exits 5 after the others finished
    path = job(project, "onefails", command="mpirun -np 4 --hostfile /srv/hostfile ./usepi 1e5 3 > usepi.out",
               release=True)
    failed = project.crane("job", "run", str(path), timeout=900)
    print(failed.out[-3000:], failed.err[-3000:])
    assert failed.code == 5, (failed.code, failed.out, failed.err)
    assert "Traceback" not in failed.err
    assert "[4/6] run: failed, exit code 5" in failed.out and "failed, exit code 5" in failed.out.splitlines()[-1]
    results = project.root / "results" / "onefails"
    log = (results / "job.log").read_text()
    assert f"rank 3 on {CLUSTER}-node-2: failing on purpose" in log, log
    assert "pi = 3.14159" in (results / "usepi.out").read_text()  # the outputs are fetched all the same
    assert f"[6/6] release: released mpicluster.{CLUSTER}" in failed.out
    assert lxc_host.names(CLUSTER)["domains"] == []  # release = true, whatever the exit code
    shown = json.loads(ok(project, "job", "show", "onefails", "--json"))
    assert shown["status"] == "failed" and shown["exit_code"] == 5
    ok(project, "template", "rm", TEMPLATE, "--uri", LXC_URI)  # no stack uses it any more
