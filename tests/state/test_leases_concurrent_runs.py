"""Eight `crane apply` processes at once, each a stack of its own project taking a subnet from one shared pool in one
state database (SQLite, and the real PostgreSQL the tests start): the pool has four, so four succeed and four fail
with the pool's exhaustion, never with a lock or database error, and no subnet is handed out twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crane_iac.state.backends import open_store

STACK = """from crane_iac import IPv4Pool, Network
pool = IPv4Pool("shared", cidr="10.88.0.0/22", subnet_prefixlen=24)
Network("net-{n}", mode="isolated", ipv4=pool.subnet())
"""


def test_eight_applies_at_once_share_one_pool(state_url: str, tmp_path: Path) -> None:
    procs = []
    for n in range(8):
        root = tmp_path / f"p{n}"
        (root / "stacks").mkdir(parents=True)
        (root / "crane.toml").write_text(f'[stacks.s{n}]\nfile = "stacks/main.py"\n')
        (root / "stacks" / "main.py").write_text(STACK.format(n=n))
        procs.append(subprocess.Popen([sys.executable, "-m", "crane_iac", "apply", "--auto-approve"], cwd=root,
                                      env={**os.environ, "CRANE_STATE_URL": state_url, "NO_COLOR": "1"},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err))
    succeeded = [code for code, _ in results if code == 0]
    refused = [err for code, err in results if code != 0]
    assert len(succeeded) == 4 and len(refused) == 4, results
    assert all("pool 'shared' (10.88.0.0/22) is exhausted: it has 4 /24 subnets" in e and "Traceback" not in e
               for e in refused), refused
    store = open_store(state_url)
    try:
        values = [x.value for x in store.ip_leases(pool="shared")]
        assert sorted(values) == [f"10.88.{i}.0/24" for i in range(4)]
        assert {x.state for x in store.ip_leases(pool="shared")} == {"bound"}
    finally:
        store.close()
