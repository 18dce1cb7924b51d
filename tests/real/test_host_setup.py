"""scripts/realhost.sh and the gate of the real-hypervisor tests: a skip only where nothing can run, and a start
and stop that leave the machine as they found it. Runs before the other real tests (file order), so on a fresh
machine the start here is a real one: groups, user, /dev/kvm mode and daemons."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.real.conftest import must_run, realhost

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it starts libvirtd and changes users and groups")


def machine() -> dict[str, object]:
    """What start may change: groups, the QEMU user, /dev/kvm's owner and mode, and the daemons running."""
    def running(name: str) -> list[str]:
        out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
        return sorted(out.split())

    kvm = Path("/dev/kvm")
    return {
        "groups": sorted(g.gr_name for g in grp.getgrall() if g.gr_name in ("kvm", "libvirt-qemu")),
        "users": sorted(u.pw_name for u in pwd.getpwall() if u.pw_name == "libvirt-qemu"),
        "kvm": (kvm.stat().st_uid, kvm.stat().st_gid, kvm.stat().st_mode) if kvm.exists() else None,
        "libvirtd": running("libvirtd"),
        "virtlogd": running("virtlogd"),
    }


@root_only
def test_start_gives_a_daemon_that_answers_and_stop_leaves_the_machine_as_found(tmp_path: Path) -> None:
    before = machine()
    started = realhost("start", tmp_path / "state")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # the group libvirt 9.0 needs besides the user (without it qemu:///system never answered)
        assert "libvirt-qemu" in [g.gr_name for g in grp.getgrall()]
        version = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, text=True,
                                 timeout=30)
        assert version.returncode == 0, version.stderr
        if not before["libvirtd"]:  # this start started libvirtd: with the LXC driver
            lxc = subprocess.run(["virsh", "-c", "lxc:///system", "version"], capture_output=True, text=True,
                                 timeout=30)
            assert lxc.returncode == 0 and "Running hypervisor: LXC" in lxc.stdout, lxc.stderr
    finally:
        stopped = realhost("stop", tmp_path / "state")
    assert stopped.returncode == 0, stopped.stderr
    assert machine() == before
    assert not (tmp_path / "state").exists()


@root_only
def test_a_user_no_daemon_answers_gets_exit_3_naming_the_cause(tmp_path: Path) -> None:
    state = tmp_path / "nobody"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(REPO / "scripts" / "realhost.sh"),
         "start"], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "CRANE_REALHOST_STATE": str(state)})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not root" in result.stdout and "does not answer" in result.stdout
    assert not state.exists()  # nothing was changed


def test_the_gate_never_skips_as_root_or_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert must_run()
    monkeypatch.delenv("CI")
    assert must_run() == (os.geteuid() == 0)
