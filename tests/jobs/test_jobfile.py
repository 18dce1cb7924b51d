"""The job file: what a good one reads as, and bad input as errors naming the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crane_iac.errors import ConfigError
from crane_iac.jobs.jobfile import load_job

GOOD = """
name = "pi"
command = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"
inputs = ["params.txt"]
release = true

[cluster]
stack = "hpc"
name = "mpicluster.pi"

[program]
files = ["pi.c"]
build = "mpicc -O2 -o pi pi.c"

[outputs]
files = ["pi.out", "out/table.csv"]
dir = "results"
"""


def write(tmp_path: Path, body: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_a_job_file_reads_as_the_cluster_the_files_the_command_and_the_outputs(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, GOOD))
    assert (job.name, job.stack, job.cluster, job.address) == ("pi", "hpc", "pi", "mpicluster.pi")
    assert job.command == "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8" and job.build == "mpicc -O2 -o pi pi.c"
    assert [u.path for u in job.uploads] == [tmp_path / "pi.c", tmp_path / "params.txt"]
    assert job.outputs == ("pi.out", "out/table.csv") and job.output_dir == tmp_path / "results" and job.release
    # the files are looked for when the upload needs them: each one missing names its line
    assert job.missing() == [f"{tmp_path / 'job.toml'}:12: program.files: {tmp_path / 'pi.c'} does not exist",
                             f"{tmp_path / 'job.toml'}:4: inputs: {tmp_path / 'params.txt'} does not exist"]
    (tmp_path / "pi.c").write_text("int main(void) { return 0; }\n")
    (tmp_path / "params.txt").mkdir()
    assert job.missing() == [f"{tmp_path / 'job.toml'}:4: inputs: {tmp_path / 'params.txt'} is not a file"]


def test_the_defaults_name_the_job_after_its_file_and_keep_the_cluster(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, 'command = "./run"\n[cluster]\nname = "pi"\n', "nightly-run.toml"))
    assert (job.name, job.stack, job.release, job.build, job.uploads) == ("nightly-run", None, False, None, ())
    assert job.output_dir == tmp_path / "results" / "nightly-run"


def test_the_digest_changes_with_the_file(tmp_path: Path) -> None:
    first = load_job(write(tmp_path, GOOD)).digest
    assert load_job(write(tmp_path, GOOD.replace("1e8", "1e9"))).digest != first


def test_a_batch_script_is_uploaded_and_submitted_with_sbatch_in_place_of_a_command(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, GOOD.replace('command = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"',
                                                'sbatch = "slurm/pi.sbatch"')))
    assert (job.command, job.sbatch) == ("sbatch pi.sbatch", "pi.sbatch")  # the journal's and the progress' word
    assert [u.path for u in job.uploads] == [tmp_path / "pi.c", tmp_path / "params.txt", tmp_path / "slurm/pi.sbatch"]
    assert job.missing()[-1] == f"{tmp_path / 'job.toml'}:3: sbatch: {tmp_path / 'slurm/pi.sbatch'} does not exist"
    # what the run step starts on the head: the script submitted from the job's directory, and followed
    assert "sbatch --parsable --job-name=pi " in job.script and job.script.rstrip().endswith("wait $poller")
    assert "pi.sbatch) || exit $?" in job.script
    assert load_job(write(tmp_path, GOOD)).script == "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"


@pytest.mark.parametrize(("body", "message"), [
    (GOOD.replace("release = true", "release = \"yes\""),
     ":5: release: expected a boolean (true or false), got a string 'yes'"),
    (GOOD.replace('build = "mpicc', 'biuld = "mpicc'), ":13: program.biuld: not a job file key"),
    (GOOD.replace('command = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"\n', ""),
     "job.toml: command: required, missing"),
    (GOOD.replace('"out/table.csv"', '"../secret"'),
     ":16: outputs.files: '../secret' is not a path inside the job's directory"),
    (GOOD.replace('name = "pi"\ncommand', 'name = "Pi Job"\ncommand'),
     ":2: name: 'Pi Job': a job's name is lower-case letters, digits, - and _"),
    (GOOD.replace('name = "mpicluster.pi"', 'nmae = "pi"'), ":9: cluster.nmae: not a job file key"),
    (GOOD.replace('inputs = ["params.txt"]', 'inputs = ["pi.c"]'), ":4: inputs: 'pi.c' twice"),
    ("command = \n", "job.toml: Invalid value"),
    (GOOD.replace('inputs = ["params.txt"]', 'sbatch = "pi.sbatch"'), ":4: sbatch: give command or sbatch, not both"),
    (GOOD.replace('inputs = ["params.txt"]', 'sbatch = "pi.c"').replace('command = "mpirun -np 8 --hostfile '
                                                                        '/srv/hostfile ./pi 1e8"\n', ""),
     ":3: sbatch: 'pi.c' twice"),
    (GOOD.replace('command = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"', 'sbatch = 3'),
     ":3: sbatch: expected a string, got an integer 3"),
])
def test_bad_job_files_are_errors_naming_the_file_the_line_and_the_key(tmp_path: Path, body: str,
                                                                          message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_job(write(tmp_path, body))
    assert message in str(caught.value), str(caught.value)
    assert str(tmp_path / "job.toml") in str(caught.value)


def test_a_job_file_that_is_not_there_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file or directory"):
        load_job(tmp_path / "nope.toml")
