"""The job pipeline (``crane job run JOBFILE``): get an MPI cluster, upload the program and its inputs, build, run,
fetch the results, give the cluster back, each step journalled in the state store so that a run interrupted
anywhere is finished by the next one (docs/guides/jobs.md).

jobfile.py reads the job file; journal.py keeps a job's steps in the state store and says which are left; remote.py
is the head node as the pipeline drives it (SSH with the cluster user's key and the head's pinned host key, or a
local directory); cluster.py applies, reaches and releases the cluster through the engine; pipeline.py runs the
steps in order."""
