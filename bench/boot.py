"""Booting real tiny guests: crane against a plain libvirt-python script, on this machine's libvirtd (QEMU, TCG).

    sudo python bench/boot.py [--counts 1,2,4] [--repeat 2]

For N guests (the stacks/tinyweb.py stack: an open network with DHCP, one data volume and one directly booted
guest per web server), measures in the same run:
  * crane: `crane apply` from its start until it returns (it waits for every guest's DHCP lease), and until
    every guest answers HTTP;
  * baseline: bench/baselines/boot_guests.py, which defines and starts the same objects by hand and polls the
    leases and HTTP itself.
The figure that the target (ratio <= 1.2) applies to is the time until every guest answers HTTP. Each cell is the
median of --repeat runs, crane and baseline alternating; everything is destroyed between runs. Needs root: it
starts libvirtd with scripts/realhost.sh (and stops it after, if it started it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from tests.real.host import GUEST_DIR as GUEST  # noqa: E402  (the test helpers for the real host)
from tests.real.host import REAL_URI as URI  # noqa: E402
from tests.real.host import RealHost, ensure_pool, http_get, remove_pool, write_tinyweb  # noqa: E402

POOL = "crane-bench"
POOL_DIR = Path("/var/lib/crane-bench-pool")


def wait_http(addresses: list[str]) -> None:
    for address in addresses:
        http_get(address, timeout=300)


def crane_run(workdir: Path, n: int, prefix: str, net3: str) -> tuple[float, float]:
    project = workdir / f"crane-{prefix}"
    shutil.rmtree(project, ignore_errors=True)
    write_tinyweb(project, prefix=prefix, subnet=f"{net3}.0/24", web_count=n)
    crane = [sys.executable, "-m", "crane_iac"]
    started = time.monotonic()
    subprocess.run([*crane, "apply", "--auto-approve"], cwd=project, check=True, capture_output=True)
    applied = time.monotonic() - started
    out = subprocess.run([*crane, "output", "--json"], cwd=project, check=True, capture_output=True, text=True)
    wait_http(list(json.loads(out.stdout).values()))
    answered = time.monotonic() - started
    subprocess.run([*crane, "destroy", "--auto-approve"], cwd=project, check=True, capture_output=True)
    return applied, answered


def baseline_run(n: int, prefix: str, net3: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, str(HERE / "baselines" / "boot_guests.py"), URI, POOL, prefix, net3,
                          str(n), str(GUEST / "vmlinuz"), str(GUEST / "initrd.img")],
                         check=True, capture_output=True, text=True)
    times = json.loads(out.stdout)
    return times["leased"], times["http"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    started = subprocess.run([str(REPO / "scripts" / "realhost.sh"), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"no real hypervisor: {started.stdout.strip()}")
    try:
        subprocess.run(["bash", str(REPO / "tests" / "guest" / "build.sh"), str(GUEST)], check=True,
                       capture_output=True)
        conn = libvirt.open(URI)
        created_pool = ensure_pool(conn, POOL, POOL_DIR)  # the baseline script's; crane's stack declares its own
        host = RealHost(conn, GUEST / "vmlinuz", GUEST / "initrd.img", pool=POOL)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in [int(c) for c in args.counts.split(",")]:
                crane_times: list[tuple[float, float]] = []
                base_times: list[tuple[float, float]] = []
                for r in range(args.repeat):
                    for who in (("crane", "base") if r % 2 == 0 else ("base", "crane")):
                        prefix, net3 = f"cb{who[0]}{n}-", f"10.240.{n * 10 + r}"
                        host.sweep(prefix)
                        if who == "crane":
                            crane_times.append(crane_run(Path(tmp), n, prefix, net3))
                        else:
                            base_times.append(baseline_run(n, prefix, net3))
                            host.sweep(prefix)
                c_apply = statistics.median(t[0] for t in crane_times)
                c_http = statistics.median(t[1] for t in crane_times)
                b_lease = statistics.median(t[0] for t in base_times)
                b_http = statistics.median(t[1] for t in base_times)
                rows.append((n, c_apply, b_lease, c_http, b_http))
        if created_pool:
            remove_pool(conn, POOL, POOL_DIR)
        conn.close()
    finally:
        subprocess.run([str(REPO / "scripts" / "realhost.sh"), "stop"])
    print(f"Booting tiny guests on libvirtd + QEMU (TCG), median of {args.repeat}; target: crane/baseline <= 1.2 "
          "to every guest answering HTTP\n")
    print("| guests | crane apply (waits for leases) | script to every lease | crane to every HTTP answer "
          "| script to every HTTP answer | ratio (HTTP) | target met |")
    print("|---:|---:|---:|---:|---:|---:|:---:|")
    for n, c_apply, b_lease, c_http, b_http in rows:
        ratio = c_http / b_http
        print(f"| {n} | {c_apply:.2f} s | {b_lease:.2f} s | {c_http:.2f} s | {b_http:.2f} s | {ratio:.2f}× "
              f"| {'yes' if ratio <= 1.2 else 'no'} |")


if __name__ == "__main__":
    main()
