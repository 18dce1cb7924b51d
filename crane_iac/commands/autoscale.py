"""`crane autoscale`: the autoscaler's loop, once or until a signal, with its Prometheus metrics; on a shared state
store (PostgreSQL) as one of several replicas, of which the one holding the stack's lease runs the periods."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from crane_iac.commands.base import Chdir, Stack, VarFiles, Vars, app, workspace


@app.command()
def autoscale(
    stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
    once: Annotated[bool, typer.Option("--once", help="One period, then exit.")] = False,
    period: Annotated[float, typer.Option("--period", min=0.1, help="Seconds between periods.")] = 15.0,
    lease: Annotated[float, typer.Option("--lease", min=0.5, help=(
        "Seconds the leader's lease lasts unrenewed: a standby replica takes over within a period and this "
        "after the leader dies or loses the state database."))] = 30.0,
    status: Annotated[bool, typer.Option("--status", help="The last decisions that changed a size.")] = False,
    metrics_port: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port.")] = None,
    metrics_address: Annotated[str, typer.Option(
        "--metrics-address", help="Address the metrics are served on.")] = "127.0.0.1",
) -> int:
    """Resize the stack's autoscaled web tiers (AppDomain(autoscale=...)) from their servers' signal."""
    import signal
    import threading

    from crane_iac.autoscaler.controller import BY, Autoscaler
    from crane_iac.autoscaler.leader import ROLE, Leadership
    from crane_iac.errors import CraneError

    ws = workspace(chdir, stack, var, var_file)
    if status:
        entries = [e for e in ws.history(limit=1000) if e.by == BY]
        for entry in entries[:20]:
            print(f"{entry.at}  serial {entry.serial}  {entry.address} = {(entry.after or {}).get('value')}  "
                  f"{entry.why}")
        if not entries:
            print("The autoscaler has not changed a size of this stack.")
        leader = ws.store.leader(ws.name, ROLE)
        if leader is not None:
            lease_left = f"{leader.remaining:.0f} s left" if leader.remaining > 0 else "lapsed"
            print(f"leader: {leader.describe()}, lease {lease_left}")
        return 0
    def log(line: str) -> None:
        print(line, flush=True)

    leadership = Leadership(ws.store, ws.name, ttl=lease, log=lambda _line: None)
    if not leadership.try_lead():
        running = leadership.seen.describe() if leadership.seen is not None else "another loop"
        if once:
            raise CraneError(f"crane autoscale runs for stack {ws.name!r} already: {running} leads; --once runs a "
                             "period only where no loop runs")
        if not ws.store.shared:
            raise CraneError(f"crane autoscale runs for stack {ws.name!r} already: {running}; one loop runs per "
                             f"stack on this state ({ws.store.url}): stop that one first, or keep the state in "
                             "PostgreSQL to run replicas (docs/guides/autoscaling.md)")
    leadership.log = log
    log(f"autoscale: leading (token {leadership.fence.token})" if leadership.fence is not None
        else f"autoscale: standing by: {leadership.seen.describe() if leadership.seen else 'another loop'} leads")
    stopping = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        leadership.start()
    scaler = Autoscaler(ws, log=log, leadership=leadership)
    try:
        if metrics_port is not None:
            from crane_iac.extras import require

            require("prometheus_client", "crane autoscale --metrics-port")
            from crane_iac.autoscaler.exporter import Exporter

            scaler.exporter = Exporter()
            scaler.exporter.serve(metrics_port, metrics_address)
            log(f"metrics on http://{metrics_address}:{metrics_port}/metrics")
        if once:
            scaler.period()  # its failure is the command's (the CLI reports it)
        else:
            scaler.serve(period, stopping)
    finally:
        leadership.resign()  # a standby takes over at once
        scaler.close()  # the agents' receivers
    if not once:
        log("autoscale: stopped")
    return 0
