"""A job's batch script through Slurm: the shell script crane runs, detached, on the head in the job's directory
(remote.py's ``start``) in place of a command, for a job file that gives ``sbatch = "SCRIPT"``.

It submits the script with ``sbatch`` from the job's directory (the job's output to ``.crane/slurm.out`` there, on
the shared disk, so it can be followed from the head), writes Slurm's job ID to ``.crane/slurm-id`` (``crane job
cancel`` scancels it), then polls ``scontrol show job`` every second until the job has ended while ``tail``
copies its output to the run's log as it grows: the pipeline streams that log as it does a command's. Its exit
code is the job's: Slurm's exit code, 128 + the signal for a job killed by one, 143 for a cancelled job, 1 for a
job that failed without one (a node failure, a time limit). A controller that does not answer for a while (it is
restarted when the cluster is resized) is waited for; a job the controller no longer knows (it forgets a job an
hour after it ended, MinJobAge) is exit code 255, as a process gone without an exit code is.
"""

from __future__ import annotations

import shlex

#: Slurm's job ID, in the job's directory on the head (``crane job cancel`` scancels it)
SLURM_ID = ".crane/slurm-id"
#: the batch job's stdout and stderr, in the job's directory on the head
SLURM_OUT = ".crane/slurm.out"

_WRAPPER = r"""# written by crane: the job's batch script through Slurm (crane_iac/jobs/slurm.py)
if ! command -v sbatch >/dev/null 2>&1; then
    echo "crane: sbatch is not on the head: the job file's sbatch needs a cluster with Slurm" \
        "(MPICluster(..., scheduler=\"slurm\"))" >&2
    exit 2
fi
: > {out}
id=$(sbatch --parsable --job-name={name} --chdir="$PWD" --output="$PWD/{out}" {script}) || exit $?
id=${{id%%;*}}
echo "$id" > {id_file}
echo "crane: submitted Slurm job $id"
poll() {{
    while :; do
        line=$(scontrol show job -o "$id" 2>&1)
        case "$line" in
            *"Invalid job id"*) echo "crane: Slurm no longer knows job $id" >&2; return 255 ;;
            *JobState=*) ;;
            *) sleep 1; continue ;;  # the controller does not answer (restarting): wait for it
        esac
        state=$(printf '%s\n' "$line" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case "$state" in
            PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|SIGNALING|STAGE_OUT|"")
                sleep 1; continue ;;
        esac
        code=$(printf '%s\n' "$line" | sed -n 's/.* ExitCode=\([0-9]*\):\([0-9]*\).*/\1/p')
        signal=$(printf '%s\n' "$line" | sed -n 's/.* ExitCode=\([0-9]*\):\([0-9]*\).*/\2/p')
        code=${{code:-1}}
        if [ "${{signal:-0}}" != 0 ]; then code=$((128 + signal)); fi
        if [ "$state" = CANCELLED ] && [ "$code" = 0 ]; then code=143; fi
        if [ "$state" != COMPLETED ] && [ "$code" = 0 ]; then code=1; fi
        echo "crane: Slurm job $id $state, exit code $code"
        return "$code"
    done
}}
poll & poller=$!
tail -c +1 -s 0.5 -F --pid=$poller {out} 2>/dev/null
wait $poller
"""


def sbatch_script(script: str, job_name: str) -> str:
    """The shell script that runs batch script ``script`` (its name in the job's directory) as Slurm job
    ``job_name`` and exits with its exit code."""
    return _WRAPPER.format(out=SLURM_OUT, id_file=SLURM_ID, name=shlex.quote(job_name), script=shlex.quote(script))


def scancel_script() -> str:
    """A shell line, run in the job's directory on the head, that cancels its Slurm job if it has one."""
    return f"if [ -s {SLURM_ID} ]; then scancel \"$(cat {SLURM_ID})\" 2>/dev/null; fi"
