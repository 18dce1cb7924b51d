"""Pre-flight checks, judged against the last bulk read: the template (the VM's, else the endpoint's) and the SRs
named (the endpoint's default_sr, a volume's pool), the PIF a
VLAN network is put on (and its tag free there), and memory that no host of the pool has."""

from __future__ import annotations

from typing import Any

from crane_iac.providers.xenapi.records import MIB, Snapshot


class Checks:
    def __init__(self, url: str, *, template: str, default_sr: str | None) -> None:
        self.url, self.template, self.default_sr = url, template, default_sr
        self.snap: Snapshot | None = None

    def learn(self, snap: Snapshot) -> None:
        self.snap = snap

    def problems(self, kind: str, p: dict[str, Any]) -> list[str]:
        snap = self.snap
        if snap is None:
            return []
        if kind == "network" and p.get("vlan") is not None:
            devices = {pif["device"] for pif in snap.of("PIF").values() if int(pif.get("VLAN", -1)) < 0}
            if p.get("bridge") not in devices:
                return [f"the pool at {self.url} has no physical interface {p.get('bridge')!r} to put VLAN "
                        f"{p['vlan']} on; its PIFs: {', '.join(sorted(devices)) or 'none'}"]
            taken = [pif for pif in snap.of("PIF").values()
                     if pif["device"] == p["bridge"] and str(pif.get("VLAN")) == str(p["vlan"])]
            if taken:
                return [f"VLAN {p['vlan']} is already on {p['bridge']} in the pool at {self.url}"]
        if kind == "volume":
            pool = p.get("pool")
            named = self.default_sr if pool == "default" else pool
            if named is not None and not snap.by_name("SR", named):
                return [f"the SR {named!r} is not in the pool at {self.url} ("
                        f"{'default_sr in crane.toml' if pool == 'default' else 'the volume pool names it'})"]
            return []
        if kind != "vm":
            return []
        problems = []
        template = p.get("template") or self.template
        if not snap.templates(template):
            where = "the VM's template" if p.get("template") else "template in crane.toml"
            problems.append(f"the template {template!r} is not in the pool at {self.url} ({where} names the one "
                            "the VM is made from)")
        if self.default_sr is not None and not snap.by_name("SR", self.default_sr):
            problems.append(f"the SR {self.default_sr!r} is not in the pool at {self.url} (default_sr in crane.toml)")
        hosts = [int(rec.get("memory_total", 0)) for rec in snap.of("host_metrics").values()]
        largest = max(hosts, default=0) // MIB
        if largest and p.get("max_memory_mib", 0) > largest:
            problems.append(f"max_memory_mib {p['max_memory_mib']} is more than any host of the pool has "
                            f"({largest} MiB)")
        return problems
