"""`crane autoscale`: the autoscaler's loop, once or until a signal, with its Prometheus metrics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from crane_iac.commands.base import Chdir, Stack, VarFiles, Vars, app, workspace


@app.command()
def autoscale(
    stack: Stack = None, var: Vars = None, var_file: VarFiles = None, chdir: Chdir = Path("."),
    once: Annotated[bool, typer.Option("--once", help="One period, then exit.")] = False,
    period: Annotated[float, typer.Option("--period", min=0.1, help="Seconds between periods.")] = 15.0,
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

    ws = workspace(chdir, stack, var, var_file)
    if status:
        entries = [e for e in ws.history(limit=1000) if e.by == BY]
        for entry in entries[:20]:
            print(f"{entry.at}  serial {entry.serial}  {entry.address} = {(entry.after or {}).get('value')}  "
                  f"{entry.why}")
        if not entries:
            print("The autoscaler has not changed a size of this stack.")
        return 0
    stopping = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
    scaler = Autoscaler(ws, log=lambda line: print(line, flush=True))
    if metrics_port is not None:
        from crane_iac.extras import require

        require("prometheus_client", "crane autoscale --metrics-port")
        from crane_iac.autoscaler.exporter import Exporter

        scaler.exporter = Exporter()
        scaler.exporter.serve(metrics_port, metrics_address)
        print(f"metrics on http://{metrics_address}:{metrics_port}/metrics", flush=True)
    try:
        while True:
            try:
                scaler.period()
            except Exception as exc:  # a period's failure is logged; the loop goes on (once: the CLI reports it)
                if once:
                    raise
                print(f"{type(exc).__name__}: {exc}", flush=True)
            if once or stopping.wait(period):
                break
    finally:
        scaler.close()  # the agents' receivers
    if not once:
        print("autoscale: stopped", flush=True)
    return 0

