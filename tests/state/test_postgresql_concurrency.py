"""Many `crane apply` processes at once against one PostgreSQL state: different stacks side by side, one stack
queued behind its lock, runners SIGKILLed mid-apply. Afterwards no update is lost (each stack's serials rise one
commit at a time and its history replays to exactly its resources), no lock is left, and the next apply converges.

Each stack lives in a project directory of its own (its own sandbox hypervisor, which a file lock serialises), all
of them sharing the one state database through ``state = "postgresql+psycopg://…"`` in crane.toml.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import sqlalchemy

from crane_iac.state.backends import open_store
from crane_iac.state.base import StateStore
from tests.conftest import CRANE, ProjectDir
from tests.waiting import wait_until

VMS = 10
STACK = """
from crane_iac import VM, Network, variable
lan = Network("lan", ipv4="10.71.0.0/24")
for i in range({vms}):
    VM(f"vm-{{i}}", vcpus=1, memory_mib=variable("memory"), max_memory_mib=1024, networks=[lan])
"""
CONFIG = """
state = "{url}"
[stacks.{name}]
file = "stacks/main.py"
[stacks.{name}.vars]
memory = {{ type = "int", default = 256 }}
"""


def make_project(root: Path, name: str, url: str) -> ProjectDir:
    root.mkdir()
    project = ProjectDir(root)
    project.write_config(CONFIG.format(url=url, name=name))
    project.write_stack(STACK.format(vms=VMS))
    return project


def start(project: ProjectDir, *args: str, failpoint: str | None = None) -> subprocess.Popen[str]:
    # a run killed with SIGKILL leaves its temporary files behind: keep them in the test's directory
    tmp = project.root / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(tmp)}
    env.pop("CRANE_FAILPOINT", None)
    if failpoint:
        env["CRANE_FAILPOINT"] = failpoint
    return subprocess.Popen([*CRANE, "apply", "--auto-approve", *args], cwd=project.root, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lock_rows(url: str) -> dict[str, str]:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        rows = {r[0]: r[1] for r in conn.execute(sqlalchemy.text("SELECT stack, lock_id FROM locks"))}
    engine.dispose()
    return rows


def assert_consistent(store: StateStore, stack: str) -> None:
    """Serials rise by one per commit with nothing skipped or repeated, and replaying the history gives exactly the
    recorded resources and their properties."""
    state = store.read(stack)
    history = store.history(stack, limit=100_000)
    serials = [h.serial for h in history]
    assert serials == sorted(serials), serials
    assert sorted(set(serials)) == list(range(1, state.serial + 1)), (serials, state.serial)
    replayed: dict[str, object] = {}
    for h in history:
        if h.action in ("create", "update", "replace", "adopt", "import", "refresh"):
            replayed[h.address] = h.after
        elif h.action in ("delete", "forget"):
            replayed.pop(h.address, None)
        elif h.action == "move":
            assert h.before is not None and h.after is not None
            replayed[h.after["address"]] = replayed.pop(h.before["address"])
    assert replayed == {a: r.properties for a, r in state.resources.items()}


def test_concurrent_applies_lose_nothing_and_leave_no_lock(tmp_path: Path, postgresql_database: str) -> None:
    url = postgresql_database
    alpha = make_project(tmp_path / "alpha", "alpha", url)
    beta = make_project(tmp_path / "beta", "beta", url)
    gamma = make_project(tmp_path / "gamma", "gamma", url)
    store = open_store(url)
    started: list[subprocess.Popen[str]] = []
    try:
        queued = [start(alpha, "--var", f"memory={m}", "--lock-timeout", "60") for m in (256, 384, 512)]
        slow = start(beta, failpoint="slow:0.3")
        crashing = start(gamma, failpoint="after-commit")
        started += [*queued, slow, crashing]

        # kill the slow runner mid-apply, holding its lock, once something of it is committed
        wait_until(lambda: any(h.action == "create" for h in store.history("beta")), 30, "beta's first commit",
                   detail=lambda: "beta still running" if slow.poll() is None
                   else f"beta exited {slow.returncode}: {slow.communicate()}")
        info = store.lock_info("beta")
        assert info is not None and info.pid == slow.pid and info.operation == "apply"
        slow.send_signal(signal.SIGKILL)
        assert slow.wait(30) == -signal.SIGKILL
        wait_until(lambda: store.lock_info("beta") is None, 30, "the killed runner's advisory lock to go")
        assert lock_rows(url).get("beta") == info.id  # its row is left behind, naming nobody: no lock

        assert crashing.wait(60) == -signal.SIGKILL
        for proc in queued:  # the three runs of one stack took turns; none lost its work
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, (out, err)
            assert "Apply complete" in out, out
        for proc in (slow, crashing):
            proc.communicate(timeout=10)

        assert [store.lock_info(s) for s in ("alpha", "beta", "gamma")] == [None, None, None]
        assert set(lock_rows(url)) <= {"beta", "gamma"}  # the finished runs removed their rows
        alpha_history = store.history("alpha", limit=100_000)
        assert sum(h.action == "outputs" for h in alpha_history) == 3  # each of the three runs finished its apply
        assert {h.after["memory_mib"] for h in alpha_history if h.action == "update" and h.after} <= {384, 512, 256}
        assert store.read("beta").resources and len(store.read("beta").resources) < VMS + 1  # killed part way
        for stack in ("alpha", "beta", "gamma"):
            assert_consistent(store, stack)

        for project in (alpha, beta, gamma):  # the next apply converges, whatever the last one left
            done = project.crane("apply", "--auto-approve", "--var", "memory=640")
            assert done.code == 0, done.err
            assert project.crane("plan", "--detailed-exitcode", "--var", "memory=640").code == 0
        for stack, project in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            state = store.read(stack)
            assert state.intents == {} and store.lock_info(stack) is None
            assert len(state.resources) == VMS + 1
            assert {r.properties["memory_mib"] for r in state.resources.values() if r.kind == "vm"} == {640}
            assert project.domains() == sorted(f"vm-{i}" for i in range(VMS))
            assert_consistent(store, stack)
        assert store.stacks() == ["alpha", "beta", "gamma"]
    finally:
        for proc in started:  # a failure part way leaves no run behind to write into the next test's database
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        store.close()
