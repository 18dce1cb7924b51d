"""The autoscaler's loop on the embedded sandbox, driven by the simulated source (.crane/simulated-metrics.json):
it writes the decision as the tier's durable setting with its reason, converges the tier with a targeted apply
through the workspace, clamps a size the stack's new range excludes, and survives a lock a human apply holds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from crane_iac.autoscaler.controller import BY, Autoscaler
from crane_iac.autoscaler.exporter import Exporter
from crane_iac.engine.workspace import Workspace
from crane_iac.markdown import render_markdown
from crane_iac.render import render_plan
from tests.conftest import ProjectDir, free_port
from tests.engine.test_workspace import apply, project
from tests.waiting import wait_until

STACK = """
from crane_iac import AppDomain, Network, ScalingPolicy, WebTier

lan = Network("shop-net", mode="isolated", ipv4="10.86.0.0/24", dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size=2, min=1, max={max}),
          autoscale=ScalingPolicy(upper=0.8, lower=0.3, target=0.7, cooldown=0, stabilisation=0, warmup=0))
"""  # target 0.7: the tier scales out above 0.77 (target plus 10 %); two servers at 0.86–0.88 scale out by one
# (ceil(2 × 0.87 / 0.7) = 3); a server above hot 0.9 (midway between upper and 1) scales out by the hot rule


def servers(ws: Workspace) -> list[str]:
    return sorted(r.physical for a, r in ws.state().resources.items() if a.startswith("appdomain.shop/container.web"))


def simulate(root: Path, **values: float) -> None:
    (root / ".crane" / "simulated-metrics.json").write_text(json.dumps({f"shop-{k.replace('_', '-')}": v
                                                                        for k, v in values.items()}))


def test_high_memory_scales_out_through_a_setting_and_a_targeted_apply(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(max=6))
    apply(Workspace.open(root))
    simulate(root, web_1=0.88, web_2=0.86)
    lines: list[str] = []
    report = Autoscaler(Workspace.open(root), log=lines.append).period()[0]
    assert report.decision is not None and report.decision.size == 3 and report.converged, lines
    ws = Workspace.open(root)
    assert servers(ws) == ["shop-web-1", "shop-web-2", "shop-web-3"]
    setting = ws.settings()["appdomain.shop/web.size"]
    assert (setting.value, setting.by) == (3, BY) and "scale-out:" in setting.why and "0.87" in setting.why
    assert "appdomain.shop: out to 3 (scale-out)" in lines[0] and lines[0].endswith("; applied")
    plan = ws.plan()
    assert not plan.has_changes  # a human plan honours the autoscaler's size
    # and shows who owns it: the size in effect, the declared range, the stack's size, the last decision's reason
    (tier,) = plan.tiers
    assert (tier.tier, tier.size, tier.min, tier.max, tier.declared, tier.owner) == ("web", 3, 1, 6, 2, BY)
    shown = render_plan(plan)
    assert "appdomain.shop web: size 3 in [1, 6], the stack says 2; set by autoscaler: scale-out:" in shown
    assert "appdomain.shop` web: size **3** in [1, 6]" in render_markdown(plan)


def test_low_memory_scales_in_to_the_windows_size_in_one_action_and_a_quiet_tier_holds(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(max=6))
    ws = Workspace.open(root)
    apply(ws)
    ws.set_setting("appdomain.shop/web.size", 3, by="me", why="start at three")
    apply(Workspace.open(root))
    ticks = iter(range(1000, 100_000, 60))  # a period a minute
    scaler = Autoscaler(Workspace.open(root), log=lambda _line: None, clock=lambda: float(next(ticks)))
    simulate(root, web_1=0.5, web_2=0.5, web_3=0.5)
    held = scaler.period()[0]
    assert held.decision is not None and held.decision.size == 3 and not held.converged
    simulate(root, web_1=0.1, web_2=0.1, web_3=0.1)
    first = scaler.period()[0]  # the window still holds the last period's "3": low must hold a period first
    assert first.decision is not None and first.decision.rule == "stabilising" and not first.converged
    shrunk = scaler.period()[0]  # 0.3 of load: one server's worth, so 3 → 1 in one action
    assert shrunk.decision is not None and shrunk.decision.size == 1 and shrunk.converged
    assert "scale in 3 → 1" in shrunk.decision.reason
    assert servers(Workspace.open(root)) == ["shop-web-1"]
    # the sandbox's balancer cannot be read: the newest servers go, which the size alone says (no members setting)
    settings = Workspace.open(root).settings()
    assert "removes shop-web-2, shop-web-3: the newest" in settings["appdomain.shop/web.size"].why
    assert "appdomain.shop/web.members" not in settings


def test_a_size_outside_the_stacks_new_range_is_clamped_with_its_reason(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(max=6))
    ws = Workspace.open(root)
    apply(ws)
    ws.set_setting("appdomain.shop/web.size", 5, by=BY, why="earlier load")
    apply(Workspace.open(root))
    (root / "stacks" / "main.py").write_text(STACK.format(max=3))
    simulate(root, web_1=0.5, web_2=0.5, web_3=0.5)
    Autoscaler(Workspace.open(root), log=lambda _line: None).period()
    ws = Workspace.open(root)
    setting = ws.settings()["appdomain.shop/web.size"]
    assert setting.value == 3 and setting.why.startswith("clamped: 5 is outside the stack's range [1, 3]")
    assert servers(ws) == ["shop-web-1", "shop-web-2", "shop-web-3"]


def test_a_lock_held_by_a_human_apply_is_waited_out_and_the_next_period_converges(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(max=6))
    apply(Workspace.open(root))
    simulate(root, web_1=0.95, web_2=0.95)
    lines: list[str] = []
    scaler = Autoscaler(Workspace.open(root), log=lines.append)
    with Workspace.open(root).locked("apply", connect=False, load=False):
        report = scaler.period()[0]
    assert report.error.startswith("waiting:") and "locked" in report.error, report
    assert servers(Workspace.open(root)) == ["shop-web-1", "shop-web-2"]  # nothing changed meanwhile
    again = scaler.period()[0]
    assert again.converged and servers(Workspace.open(root)) == ["shop-web-1", "shop-web-2", "shop-web-3"]


def test_the_command_runs_one_period_and_shows_its_decisions(project: ProjectDir) -> None:
    project.write_stack(STACK.format(max=6))
    assert project.crane("apply", "--auto-approve").code == 0
    simulate(project.root, web_1=0.95, web_2=0.95)
    ran = project.crane("autoscale", "--once")
    # the average 0.95 above 0.77 (target 0.7 plus 10 %): ceil(2 × 0.95 / 0.7) = 3
    assert ran.code == 0 and "appdomain.shop: out to 3 (scale-out)" in ran.out, ran.out + ran.err
    status = project.crane("autoscale", "--status")
    assert status.code == 0 and "setting:appdomain.shop/web.size = 3" in status.out and "scale-out" in status.out
    plan = project.crane("plan")
    assert "appdomain.shop/web.size = 3  # set by autoscaler" in plan.out


def test_the_loop_serves_prometheus_metrics_and_stops_cleanly_on_sigterm(project: ProjectDir) -> None:
    project.write_stack(STACK.format(max=6))
    assert project.crane("apply", "--auto-approve").code == 0
    simulate(project.root, web_1=0.95, web_2=0.95)
    port = free_port()
    loop = subprocess.Popen([sys.executable, "-m", "crane_iac", "autoscale", "--period", "0.5", "--metrics-port",
                             str(port)], cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def metrics_after_an_apply() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text: str = response.read().decode()
            except OSError:
                return ""
            return text if "crane_autoscale_apply_seconds_count" in text else ""

        text = wait_until(metrics_after_an_apply, 60, "the loop's metrics after its first apply", every=0.3)
        assert 'crane_autoscale_desired_size{domain="appdomain.shop"} 3.0' in text, text
        assert 'crane_autoscale_decisions_total{direction="out",domain="appdomain.shop",rule="scale-out"} 1.0' \
            in text, text
        assert 'crane_autoscale_utilisation{domain="appdomain.shop"} 0.95' in text
        assert 'crane_autoscale_apply_seconds_count{domain="appdomain.shop"} 1.0' in text
    finally:
        loop.send_signal(signal.SIGTERM)
        out, _ = loop.communicate(timeout=30)
    assert loop.returncode == 0, out
    assert out.rstrip().endswith("autoscale: stopped") and "Traceback" not in out
    with pytest.raises(OSError):  # the metrics went with the process
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_the_error_counter_is_published_as_0_from_the_first_period_without_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, STACK.format(max=6))
    apply(Workspace.open(root))
    simulate(root, web_1=0.5, web_2=0.5)
    exporter = Exporter()
    (report,) = Autoscaler(Workspace.open(root), log=lambda _line: None, exporter=exporter).period()
    assert not report.error and report.decision is not None and report.decision.rule == "in-range"
    page = generate_latest(exporter.registry).decode()
    assert 'crane_autoscale_errors_total{domain="appdomain.shop"} 0.0' in page, page


def test_a_server_made_again_under_a_removed_number_warms_up_anew(tmp_path: Path) -> None:
    """Scale-in removes web-3; the next scale-out makes web-3 again (the lowest free number): the loop forgets the
    old one, so the new one is left out of the average while it warms up."""
    root = project(tmp_path, STACK.format(max=6).replace("warmup=0", "warmup=600"))
    ws = Workspace.open(root)
    apply(ws)
    ws.set_setting("appdomain.shop/web.size", 3, by="me", why="start at three")
    apply(Workspace.open(root))
    ticks = iter(range(1000, 100_000, 60))
    scaler = Autoscaler(Workspace.open(root), log=lambda _line: None, clock=lambda: float(next(ticks)))
    simulate(root, web_1=0.25, web_2=0.25, web_3=0.25)  # 0.75 of load: 0.75 on one server is above 0.72, so 3 → 2
    for _ in range(5):  # once the stabilisation window allows
        scaler.period()
        if len(servers(Workspace.open(root))) == 2:
            break
    assert servers(Workspace.open(root)) == ["shop-web-1", "shop-web-2"]
    simulate(root, web_1=0.95, web_2=0.95)
    grown = scaler.period()[0]
    assert grown.decision is not None and grown.decision.size > 2 and grown.converged
    assert "shop-web-3" in servers(Workspace.open(root))
    simulate(root, web_1=0.5, web_2=0.5, web_3=0.5)
    after = scaler.period()[0].decision
    assert after is not None and after.reading.warming >= 1, after  # web-3 is new, not the one seen at the start


def test_a_decision_on_a_clamped_size_is_written_and_not_clamped_back(tmp_path: Path) -> None:
    """A size setting outside the range (0, below min 1) is in effect as 1; high memory scales that out: the new size
    is what the setting says afterwards, not the clamp of the old one written over it."""
    root = project(tmp_path, STACK.format(max=6))
    ws = Workspace.open(root)
    apply(ws)
    ws.set_setting("appdomain.shop/web.size", 0, by="me", why="too low on purpose")
    apply(Workspace.open(root))
    simulate(root, web_1=0.95)
    report = Autoscaler(Workspace.open(root), log=lambda _line: None).period()[0]
    assert report.decision is not None and report.decision.size > 1, report
    setting = Workspace.open(root).settings()["appdomain.shop/web.size"]
    assert setting.value == report.decision.size and "scale-out" in setting.why, setting


def test_a_sample_taken_while_the_period_loads_the_stack_is_fresh_not_late(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The period's time is taken once the stack is loaded and the endpoints are connected: on a busy machine that
    takes seconds, and a sample an agent took meanwhile is not stamped in the future against it."""
    root = project(tmp_path, STACK.format(max=6))
    apply(Workspace.open(root))
    clock = [1000.0]
    ws = Workspace.open(root)
    load = ws.load_with_state

    def slow_load() -> object:
        loaded = load()
        clock[0] += 5.0  # the stack took five seconds to load
        return loaded

    monkeypatch.setattr(ws, "load_with_state", slow_load)
    (root / ".crane" / "simulated-metrics.json").write_text(json.dumps({"shop-web-1": [0.95, 1004.0],
                                                                        "shop-web-2": [0.9, 1004.5]}))
    report = Autoscaler(ws, log=lambda _line: None, clock=lambda: clock[0]).period()[0]
    assert report.decision is not None, report.error
    assert report.decision.reading.late == 0 and report.decision.reading.fresh == 2, report.decision.reason
    assert report.decision.size == 3 and report.converged
