"""bench/jobs.py without a real host: its verdicts and step shares from given runs, how it reads crane's progress
lines, and the baseline's container definition (the shape crane's MPICluster gives a node)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bench.baselines.mpijob import WRITABLE, container_xml
from bench.jobs import _APPLIED, _PROGRESS, Results, breakdown, summary


def results(crane: list[float], base: list[float], ready: list[float]) -> Results:
    steps = {"cluster": 20.0, "upload": 0.5, "build": 1.0, "run": 5.0, "fetch": 0.5, "release": 3.0}
    phases = {"containers": 1.0, "host keys": 2.0, "ssh": 1.0, "upload": 0.2, "build": 1.0, "run": 5.0,
              "fetch": 0.2, "release": 1.0}
    return Results(crane=crane, crane_steps=[steps] * len(crane), base=base, base_phases=[phases] * len(base),
                   ratios=[c / b for c, b in zip(crane, base, strict=True)], grow_ready=ready, grow_apply=ready,
                   grow_steps=[{"container.node-5": 1.5, "configuration.head": 8.0}] * len(ready))


def test_the_verdicts_follow_the_targets() -> None:
    met = summary(results([12.0, 13.0, 12.5], [10.0, 10.0, 10.0], [9.0]), markdown=True)
    assert "1.25× (median of 3 pairs, 1.20–1.30×)" in met and "**not met**" not in met
    missed = summary(results([40.0], [12.0], [51.0]), markdown=True)
    assert missed.count("**not met**") == 2, missed


def test_each_steps_share_is_of_cranes_whole_time_and_the_rest_is_start_up() -> None:
    table = breakdown(results([40.0], [12.0], [9.0]), markdown=True)
    assert "| cluster | 20.0 | 50.0 % | 4.0 | 33.3 % |" in table, table  # the baseline's cluster: its first 3 phases
    assert "| start-up, planning, state, exit (the rest) | 10.0 | 25.0 % |" in table, table
    assert "`configuration.head` (crane apply's own line) | 8.0" in table


def test_the_progress_and_apply_lines_it_reads_are_the_ones_crane_prints() -> None:
    line = "[3/6] build: built (1.2 s)"
    found = _PROGRESS.match(line)
    assert found is not None and found.groups() == ("build", "1.2")
    assert _PROGRESS.match("[3/6] build: mpicc -O2 -o pi pi.c") is None  # the step's start, not its end
    applied = _APPLIED.match("mpicluster.cbj-s/container.node-5: created (1.52s)")
    assert applied is not None and applied.group(3) == "1.52"


def test_the_baselines_nodes_run_cranes_init_on_the_hosts_root_with_the_shared_directory() -> None:
    dom = ET.fromstring(container_xml("cbj-b1-node-1", "node-1", "10.95.1.11", "cbj-b1-net", "ssh-ed25519 AAAA k",
                                      Path("/tmp/shared")))
    assert Path(dom.findtext("os/init") or "").name == "init.sh"
    env = {e.get("name"): e.text for e in dom.iterfind("os/initenv")}
    assert env["CRANE_NODE"] == "node-1" and env["CRANE_SHARED"] == "/srv" and env["CRANE_MPI_USER"] == "mpi"
    mounts = {fs.find("target").get("dir"): fs for fs in dom.iterfind("devices/filesystem")}  # type: ignore[union-attr]
    assert mounts["/"].find("readonly") is not None and set(WRITABLE) <= set(mounts)
    assert mounts["/srv"].find("source").get("dir") == "/tmp/shared"  # type: ignore[union-attr]
    assert dom.find("devices/interface/ip").get("address") == "10.95.1.11"  # type: ignore[union-attr]
