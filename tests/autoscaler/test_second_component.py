"""Scaling is a capability: a component kind written here, not an app domain, declares a scalable tier through
``ScalesTiers``, and the autoscaler resizes it, and the plan and its Markdown show it, with no change to any of them."""

from __future__ import annotations

import json

from tests.conftest import ProjectDir, ok

STACK = '''
from crane_iac import VM, Component, ScalingPolicy, setting
from crane_iac.scaling import ScalableTier, TierHost


class Workers(Component):
    """A batch of worker VMs whose count a controller may change."""

    kind = "workers"
    size: int = 2
    min: int = 1
    max: int = 5

    def build(self):
        self.count = setting(f"{self.address}/workers.size", self.size)
        self.vms = [VM(f"w-{i}", vcpus=1, memory_mib=64) for i in range(1, self.count + 1)]

    def scalable_tiers(self):
        hosts = tuple(TierHost(vm.address, vm.kind, vm.physical_name, i) for i, vm in enumerate(self.vms, 1))
        return [ScalableTier(address=self.address, name="workers", setting=f"{self.address}/workers.size",
                             size=self.count, declared=self.size, min=self.min, max=self.max, hosts=hosts,
                             policy=ScalingPolicy(upper=0.8, lower=0.4).model_dump(),
                             member_prefix=f"{self.address}/vm.w-")]


Workers("batch")
'''


def test_a_second_component_kind_is_autoscaled_planned_and_shown(project: ProjectDir) -> None:
    project.write_stack(STACK)
    ok(project, "apply", "--auto-approve")
    assert project.domains() == ["batch-w-1", "batch-w-2"]
    assert "workers.batch workers: size 2 in [1, 5], the stack says 2; the stack's size" in ok(project, "plan")
    # the sandbox runs nothing: the autoscaler reads simulated memory use, here high on both workers
    (project.root / ".crane" / "simulated-metrics.json").write_text(json.dumps({"batch-w-1": 0.95,
                                                                                "batch-w-2": 0.9}))
    ran = ok(project, "autoscale", "--once")
    assert "workers.batch: out to" in ran, ran
    size = json.loads(ok(project, "setting", "list", "--json"))["workers.batch/workers.size"]["value"]
    assert 2 < size <= 5
    plan = ok(project, "plan")
    assert f"workers.batch workers: size {size} in [1, 5], the stack says 2; set by autoscaler" in plan
    assert len(project.domains()) == size  # the loop converged the stack to its decision
    markdown = ok(project, "plan", "--format", "markdown")
    assert "**Scalable tiers**" in markdown and f"`workers.batch` workers: size **{size}** in [1, 5]" in markdown
