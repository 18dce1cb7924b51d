"""``crane job`` on the embedded sandbox: bad input as clean errors, and list/show/cancel of a job's record."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

from tests.conftest import ProjectDir, assert_clean_error
from tests.jobs.test_pipeline import STACK, job_file, spawn


def sandbox(tmp_path: Path) -> ProjectDir:
    project = ProjectDir(tmp_path)
    project.write_config('[stacks.main]\nfile = "stacks/main.py"\n')
    project.write_stack(STACK)
    (tmp_path / "head").mkdir()
    return project


def test_a_bad_job_file_is_an_error_naming_its_line(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    (tmp_path / "job.toml").write_text(textwrap.dedent("""\
        command = "./pi"
        release = "yes"
        [cluster]
        name = "pi"
    """))
    assert_clean_error(project.crane("job", "run", "job.toml"),
                       f"{tmp_path / 'job.toml'}:2: release: expected a boolean (true or false), got a string 'yes'")


def test_a_cluster_the_stack_does_not_have_is_an_error_naming_the_ones_it_has(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    path = job_file(tmp_path)
    path.write_text(path.read_text().replace('name = "pi"\n[program]', 'name = "cfd"\n[program]'))
    assert_clean_error(project.crane("job", "run", "job.toml"),
                       "mpicluster.cfd: no resource 'mpicluster.cfd' in the stack or its state; did you mean "
                       "mpicluster.pi?")
    (record,) = json.loads(project.crane("job", "list", "--json").out)
    assert record["steps"]["cluster"]["status"] == "running"
    # the job finished no step: with its file put right it starts afresh rather than being refused as changed
    job_file(tmp_path)
    again = project.crane("job", "run", "job.toml")
    assert "[1/6] cluster: applied" in again.out and "job file has changed" not in again.err, again.out + again.err
    assert json.loads(project.crane("job", "list", "--json").out)[0]["id"] != record["id"]


def test_the_sandbox_head_cannot_be_reached_without_its_pinned_host_key(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    job_file(tmp_path)
    assert_clean_error(project.crane("job", "run", "job.toml"), "the head's host key is not on the shared disk")
    # the cluster step is recorded done; the job waits to be resumed at its upload
    listed = project.crane("job", "list").out
    assert "pi" in listed and "running" in listed and "upload" in listed, listed
    shown = project.crane("job", "show", "pi").out
    assert "cluster  done" in shown and "upload   pending" in shown, shown


def test_list_show_and_cancel_of_an_interrupted_job(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    killed = spawn(tmp_path, job_file(tmp_path), {"CRANE_FAILPOINT": "job-after-upload"})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    (record,) = json.loads(project.crane("job", "list", "--json").out)
    assert record["status"] == "running" and record["steps"]["upload"]["status"] == "done"
    assert f"job pi ({record['id']}): running" in project.crane("job", "show", "pi").out
    cancelled = project.crane("job", "cancel", "pi")
    assert cancelled.code == 0 and f"job pi ({record['id']}): cancelled" in cancelled.out, cancelled.err
    assert json.loads(project.crane("job", "show", "pi", "--json").out)["status"] == "cancelled"
    assert_clean_error(project.crane("job", "cancel", "pi"), "has ended already: cancelled")
    assert_clean_error(project.crane("job", "show", "nope"), "stack 'main' has no job 'nope' (its jobs: pi)")


def test_a_missing_input_is_an_error_naming_its_line_before_the_cluster_is_made(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    job_file(tmp_path)
    (tmp_path / "params.txt").unlink()
    assert_clean_error(project.crane("job", "run", "job.toml"),
                       f"{tmp_path / 'job.toml'}:3: inputs: {tmp_path / 'params.txt'} does not exist",
                       "nothing was done; put the files right and run the job again")
    assert "mpicluster" not in project.crane("state", "list").out  # no cluster made for a job that cannot run
    (record,) = json.loads(project.crane("job", "list", "--json").out)
    assert all(step["status"] == "pending" for step in record["steps"].values())


def test_a_template_the_library_does_not_have_is_a_plan_error_naming_it(tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    project.write_stack(STACK.replace("nodes=2)", 'nodes=2, template="no-such-tmpl")'))
    job_file(tmp_path)
    result = project.crane("job", "run", "job.toml")
    assert_clean_error(result, "mpicluster.pi/container.head", "no template 'no-such-tmpl'")
    assert_clean_error(project.crane("plan"), "no template 'no-such-tmpl'")
    assert "mpicluster" not in project.crane("state", "list").out
