"""The state store's part of the 10,000-resource no-op plan on PostgreSQL against SQLite, measured in one run.

    python bench/state_backends.py                       # starts a throwaway PostgreSQL (Debian's binaries)
    python bench/state_backends.py --postgresql URL      # or uses an existing, empty database
    python bench/state_backends.py --quick               # 1,000 resources

First the issue's figure: the whole `crane plan` of bench/run.py's 10,000-VM sandbox stack as a process, with its
state on SQLite and (moved there with `crane state migrate`) on PostgreSQL. Then its parts, as a fresh process
would ask them of its state: open the store (schema check), read the stack (a row per resource), and commit the
outputs (one serial). Each is the median of several runs, every run with a new store (new connections). Prints a
Markdown table as bench/run.py does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.run import CRANE, project, row, timed  # noqa: E402
from crane_iac.objects import Outcome, Recorded  # noqa: E402
from crane_iac.state.backends import open_store  # noqa: E402
from crane_iac.state.base import Committed, StateStore  # noqa: E402
from crane_iac.state.migrate import migrate  # noqa: E402

STACK = "big"


def records(vms: int, networks: int) -> list[Recorded]:
    """What crane records for bench/run.py's big stack: networks, and VMs each on one of them (the sandbox's shape)."""
    nets = [Recorded(f"network.net-{n}", "network", f"net-{n}",
                     {"bridge": None, "dhcp": True, "ipv4": f"10.{n // 250}.{n % 250}.0/24", "ipv6": None,
                      "mode": "isolated", "vlan": None},
                     {"bridge_name": None, "uuid": f"00000000-0000-4000-8000-{n:012d}"})
            for n in range(networks)]
    machines = [Recorded(f"vm.vm-{i}", "vm", f"vm-{i}",
                         {"autostart": False, "cloud_init": None, "cmdline": None, "description": None, "disks": [],
                          "initrd": None, "kernel": None, "max_memory_mib": 1024, "max_vcpus": 1, "memory_mib": 256,
                          "nics": [{"mac": f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                                    "network": f"net-{i % networks}"}], "running": True, "vcpus": 1},
                         {"addresses": [], "ipv4": None, "uuid": f"10000000-0000-4000-8000-{i:012d}"},
                         [f"network.net-{i % networks}"])
                for i in range(vms)]
    return nets + machines


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(url: str, repeat: int) -> dict[str, float]:
    """Seconds for each part of the no-op plan's state work on ``url``, each with a newly opened store."""
    parts: dict[str, float] = {}
    parts["open"] = median_seconds(lambda: open_store(url).close(), repeat)

    def read() -> None:
        store = open_store(url)
        state = store.read(STACK)
        assert len(state.resources) > 0
        store.close()

    def commit() -> None:
        store = open_store(url)
        store.commit(STACK, [], {"web": "10.0.0.1"})
        store.close()

    def whole() -> None:
        store = open_store(url)
        state = store.read(STACK)
        store.commit(STACK, [], {"web": "10.0.0.1"}, expected_serial=state.serial)
        store.close()

    parts["read"] = median_seconds(read, repeat) - parts["open"]
    parts["commit"] = median_seconds(commit, repeat) - parts["open"]
    parts["whole"] = median_seconds(whole, repeat)
    return parts


def fill(store: StateStore, vms: int, networks: int) -> float:
    started = time.perf_counter()
    store.commit(STACK, [Committed(r.address, Outcome.CREATE, r) for r in records(vms, networks)], {})
    return time.perf_counter() - started


def whole_plans(tmp: Path, pg_url: str, vms: int, networks: int, repeat: int) -> tuple[float, float]:
    """Seconds of `crane plan` (a whole process) on the big sandbox stack with its state on SQLite, then PostgreSQL."""
    root = project(tmp / "plan", vms, networks)
    timed([*CRANE, "apply", "--auto-approve", "--parallelism", "1"], root, 1)
    timed([*CRANE, "state", "migrate", "--to", pg_url], root, 1)
    plan = [*CRANE, "plan", "--detailed-exitcode"]
    on_sqlite = timed(plan, root, repeat)
    os.environ["CRANE_STATE_URL"] = pg_url
    try:
        on_pg = timed(plan, root, repeat)
    finally:
        del os.environ["CRANE_STATE_URL"]
    assert "No changes" in on_sqlite.stdout and "No changes" in on_pg.stdout, (on_sqlite.stdout, on_pg.stdout)
    return on_sqlite.seconds, on_pg.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 resources instead of 10,000")
    parser.add_argument("--postgresql", metavar="URL", help="an existing empty PostgreSQL database to use")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    vms, networks = (990, 10) if args.quick else (10_000, 100)
    total = vms + networks
    with tempfile.TemporaryDirectory(prefix="crane-bench-state-") as tmp:
        server = None
        if args.postgresql:
            pg_url = args.postgresql
        else:
            from tests.state.postgresql_server import PostgresServer

            server = PostgresServer().__enter__()
        try:
            if server is not None:
                pg_url = server.create_database()
            # the whole plan needs a database of its own: with --postgresql (one given database) it is left out
            plan_sq, plan_pg = whole_plans(Path(tmp), server.create_database(), vms, networks,
                                           max(3, args.repeat // 2)) if server is not None else (0.0, 0.0)
            sqlite_url = f"sqlite:///{tmp}/state.db"
            fills = {}
            for name, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
                store = open_store(url)
                fills[name] = fill(store, vms, networks)
                store.close()
            sq = measure(sqlite_url, args.repeat)
            pg = measure(pg_url, args.repeat)
            copy_url = f"sqlite:///{tmp}/copy.db"
            source, target = open_store(pg_url), open_store(copy_url)
            started = time.perf_counter()
            migrate(source, target)
            migrated = time.perf_counter() - started
            source.close()
            target.close()
        finally:
            if server is not None:
                server.__exit__(None, None, None)

    def ratio_row(what: str, key: str, target: float | None) -> str:
        ratio = pg[key] / sq[key]
        return row(what, f"{pg[key] * 1000:.0f} ms", f"≤ {target}× SQLite" if target else "",
                   f"{sq[key] * 1000:.0f} ms", f"{ratio:.2f}×", ratio <= target if target else None)

    rows = [
        "| measure | PostgreSQL | target | SQLite (same run) | ratio | |",
        "|---|---|---|---|---|---|",
        *([row(f"`crane plan`, no changes, {vms:,} VMs on the sandbox (a whole process)", f"{plan_pg:.2f} s",
               "≤ 1.5× SQLite", f"{plan_sq:.2f} s", f"{plan_pg / plan_sq:.2f}×", plan_pg / plan_sq <= 1.5)]
          if plan_sq else []),
        ratio_row(f"its state part: open + read {total:,} rows + commit outputs", "whole", 1.5),
        ratio_row("open the store (schema check)", "open", None),
        ratio_row(f"read the stack ({total:,} resources)", "read", None),
        ratio_row("commit the outputs (one serial)", "commit", None),
        row(f"first commit of {total:,} resources", f"{fills['postgresql']:.2f} s", "", f"{fills['sqlite']:.2f} s",
            f"{fills['postgresql'] / fills['sqlite']:.2f}×", None),
        row(f"migrate {total:,} resources PostgreSQL → SQLite", f"{migrated:.2f} s", "", "", "", None),
    ]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
