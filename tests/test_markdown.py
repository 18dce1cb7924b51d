"""The Markdown plan for pull-request comments, from a real plan on two sandbox endpoints."""

from __future__ import annotations

import textwrap

from crane_iac.markdown import render_markdown
from crane_iac.objects import Action
from crane_iac.planner.model import Plan, ResourceChange
from tests.conftest import ProjectDir

STACK = """
from crane_iac import VM, Network, export

lan = Network("lan", mode="nat", ipv4="10.80.0.0/24")
web = VM("web", vcpus=1, memory_mib={memory}, max_memory_mib=1024, networks=[lan])
far = Network("far", mode="nat", ipv4="10.81.0.0/24", provider="dc2")
export("web-uuid", web.uuid)
"""


def test_a_plan_comment_groups_changes_by_endpoint_and_keeps_drift_apart(project: ProjectDir) -> None:
    project.write_config("""
        [stacks.main]
        file = "stacks/main.py"
        [stacks.main.providers.dc2]
    """)
    project.write_stack(STACK.format(memory=256))
    first = project.crane("plan", "--format", "markdown")
    assert first.code == 0, first.err
    text = first.out
    assert text.startswith("### crane plan for stack `main`: **3 to create**, 0 to update, 0 to replace, 0 to delete\n")
    assert "#### Endpoint `default`: 2 changes" in text and "#### Endpoint `dc2`: 1 change" in text
    assert text.index("Endpoint `default`") < text.index("<code>+ vm.web</code>") < text.index("Endpoint `dc2`")
    assert "<summary><code>+ network.far</code> create</summary>" in text
    assert "+ ipv4 = 10.81.0.0/24\n" in text and "```diff\n+ dhcp = true\n" in text
    assert "| `web-uuid` | (none) | (known after apply) |" in text
    assert text.count("<details>") == text.count("</details>") == 3
    assert project.crane("apply", "--auto-approve").code == 0

    # drift (made by a second client) apart from the change the stack asks for
    from crane_iac.providers.libvirt import LibvirtProvider

    provider = LibvirtProvider(None, sandbox_dir=project.root / ".crane", mutating=True)
    provider.conn.lookupByName("web").setMemoryFlags(300 * 1024, 1)  # live
    provider.host.changing("vm", "web")
    provider.close()
    project.write_stack(STACK.format(memory=512))
    text = project.crane("plan", "--format", "markdown").out
    assert "**1 to update**" in text
    assert "<summary>Drift: 1 resource(s) changed outside crane since the last apply" in text
    assert "| `vm.web` | `memory_mib` | 256 | 300 |" in text
    assert text.index("Drift:") < text.index("<code>~ vm.web</code>")
    assert "<summary><code>~ vm.web</code> update in place</summary>" in text
    assert "- memory_mib = 300\n+ memory_mib = 512\n" in text  # from what is there now
    assert "Made against state serial 2." in text


def test_the_comment_stays_short_for_a_big_plan() -> None:
    plan = Plan("big", "l", 1, changes=[ResourceChange(f"vm.v{i}", "vm", f"v{i}", Action.CREATE, after={"vcpus": 1})
                                        for i in range(250)])
    text = render_markdown(plan, limit=200)
    assert text.count("<details>") == 200 and "… and 50 more changes" in text
    assert text.startswith("### crane plan for stack `big`: **250 to create**")


def test_no_changes_says_so() -> None:
    text = render_markdown(Plan("main", "l", 3))
    assert text == textwrap.dedent("""\
        ### crane plan for stack `main`: no changes

        The infrastructure matches the stack.

        Made against state serial 3.
        """)
