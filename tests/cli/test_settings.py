"""Durable settings never beat the user silently: a plan warns when a setting overrides the stack's own value (a
``--var`` the user gave included) and ``--detailed-exitcode`` says so, and a component's settings go with it when
it is destroyed."""

from __future__ import annotations

import json

from tests.conftest import ProjectDir, ok

SHOP = """
from crane_iac import AppDomain, Network, WebTier, variable

lan = Network("shop-net", mode="nat", ipv4="10.81.0.0/24", dhcp=False)
AppDomain("shop", network=lan, web=WebTier(size=variable("web"), min=1, max=6))
"""
CONFIG = """
[stacks.main]
file = "stacks/main.py"
[stacks.main.vars]
web = { type = "int", default = 2 }
"""
KEY = "appdomain.shop/web.size"


def autoscaled(project: ProjectDir) -> None:
    project.write_config(CONFIG)
    project.write_stack(SHOP)
    ok(project, "apply", "--auto-approve")
    ok(project, "setting", "set", KEY, "5", "--why", "average memory 0.82 > 0.75")
    ok(project, "apply", "--auto-approve")


def test_a_setting_that_overrides_a_variable_is_a_warning_and_not_exit_0(project: ProjectDir) -> None:
    autoscaled(project)
    plan = project.crane("plan", "--var", "web=4", "--detailed-exitcode")
    assert plan.code == 2, plan
    head = plan.out.splitlines()[0]
    assert head.startswith("Warning: durable settings override the stack's own values"), plan.out
    assert f"{KEY} = 5, not the stack's 4: set by " in plan.out and "(average memory 0.82 > 0.75)" in plan.out
    assert f"`crane setting unset {KEY} --why TEXT` hands it back" in plan.out
    assert "not the stack's own values" in plan.out and "matches the stack." not in plan.out
    data = json.loads(ok(project, "plan", "--var", "web=4", "--json"))
    assert [(o["key"], o["value"], o["stack_value"]) for o in data["overrides"]] == [(KEY, 5, 4)]
    markdown = ok(project, "plan", "--var", "web=4", "--format", "markdown")
    assert "**Warning: durable settings override the stack's own values**" in markdown
    # the stack agreeing with the setting, or the setting handed back, is no warning
    assert project.crane("plan", "--var", "web=5", "--detailed-exitcode").code == 0
    ok(project, "setting", "unset", KEY, "--why", "the stack decides")
    plan = project.crane("plan", "--var", "web=4", "--detailed-exitcode")
    assert plan.code == 2 and "Warning" not in plan.out and "- appdomain.shop/container.web-5" in plan.out


def test_destroy_removes_a_components_settings_with_it(project: ProjectDir) -> None:
    autoscaled(project)
    plan = ok(project, "plan", "--destroy")
    assert f"- setting {KEY} = 5 (set by " in plan and "removed with appdomain.shop" in plan
    ok(project, "destroy", "--auto-approve")
    assert KEY not in ok(project, "setting", "list")
    history = ok(project, "state", "history")
    assert f"setting:{KEY}" in history and "appdomain.shop destroyed: its settings go with it" in history
    # a fresh apply uses the stack's size again
    created = ok(project, "plan")
    assert "+ appdomain.shop/container.web-2" in created and "web-3" not in created


def test_a_targeted_destroy_of_one_server_keeps_the_tiers_settings(project: ProjectDir) -> None:
    autoscaled(project)
    project.write_stack(SHOP + 'from crane_iac import Network\nNetwork("other", mode="isolated")\n')
    ok(project, "apply", "--auto-approve")
    ok(project, "destroy", "--auto-approve", "--target", "network.other")
    assert KEY in ok(project, "setting", "list")


def test_the_tiers_line_says_when_the_setting_was_clamped_or_ignored_rather_than_that_it_holds(
        project: ProjectDir) -> None:
    project.write_config(CONFIG)
    project.write_stack(SHOP.replace(", variable", ", ScalingPolicy").replace('size=variable("web")', "size=2")
                        .replace("max=6)", "max=6), autoscale=ScalingPolicy()"))
    ok(project, "apply", "--auto-approve")
    ok(project, "setting", "set", KEY, "5", "--why", "average memory 0.82 > 0.75")
    assert "appdomain.shop web: size 5 in [1, 6], the stack says 2; set by " in ok(project, "plan")
    ok(project, "setting", "set", KEY, "12", "--why", "a flash sale")
    plan = ok(project, "plan")
    assert ("appdomain.shop web: size 6 in [1, 6], the stack says 2; clamped into the range: " in plan
            and " set 12 (a flash sale)" in plan and "set by " not in plan.split("Scalable tiers")[1]), plan
    markdown = ok(project, "plan", "--format", "markdown")
    assert "`appdomain.shop` web: size **6** in [1, 6], the stack says 2; clamped into the range: " in markdown
    tiers = json.loads(ok(project, "plan", "--json"))["tiers"]
    assert [(t["size"], t["effect"], t["asked"]) for t in tiers] == [(6, "clamped", "12")]
    ok(project, "setting", "set", KEY, '"many"', "--why", "a typo")
    plan = ok(project, "plan")
    assert ("appdomain.shop web: size 2 in [1, 6], the stack says 2; the stack's size: " in plan
            and ' set "many" (a typo), which is not a number of servers' in plan), plan
    markdown = ok(project, "plan", "--format", "markdown")
    assert ' set "many" (a typo), which is not a number of servers' in markdown
