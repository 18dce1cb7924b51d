"""The job file: a TOML file naming the cluster, the program, the inputs, the command, the outputs, and whether to
give the cluster back afterwards. Every problem names the file, the line and the key, as crane.toml's do::

    name = "pi"                      # default: the file's name without .toml
    command = "mpirun -np 8 --hostfile /srv/hostfile ./pi 1e8"
    # or, on a cluster with Slurm, a batch script (a local file, uploaded) submitted with sbatch instead:
    # sbatch = "pi.sbatch"
    inputs = ["data/params.txt"]     # files uploaded next to the program
    release = true                   # destroy the cluster once the results are fetched

    [cluster]
    stack = "hpc"                    # default: the project's only stack
    name = "pi"                      # the MPICluster's name (or its address, mpicluster.pi)

    [program]
    files = ["pi.c"]
    build = "mpicc -O2 -o pi pi.c"   # optional; run on the head in the job's directory

    [outputs]
    files = ["pi.out"]               # paths in the job's directory on the head
    dir = "results"                  # where they land (default: results/<name>), next to the job file

Exactly one of ``command`` and ``sbatch``. Local paths are relative to the job file's directory. A file that is
not there is reported when the upload needs it, not before: a job whose upload finished resumes without its
sources (it never uploads twice).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crane_iac.errors import ConfigError
from crane_iac.jobs.slurm import sbatch_script
from crane_iac.tomlfile import key_line, read_toml, toml_type

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Cluster(_Strict):
    stack: str | None = None
    name: str


class _Program(_Strict):
    files: list[str] = Field(default_factory=list)
    build: str | None = None


class _Outputs(_Strict):
    files: list[str] = Field(default_factory=list)
    dir: str | None = None

    @field_validator("files")
    @classmethod
    def _relative(cls, files: list[str]) -> list[str]:
        for name in files:
            path = PurePosixPath(name)
            if not name or path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{name!r} is not a path inside the job's directory (relative, without ..)")
        return files


class _JobFile(_Strict):
    name: str | None = None
    command: str | None = None
    sbatch: str | None = None
    inputs: list[str] = Field(default_factory=list)
    release: bool = False
    cluster: _Cluster
    program: _Program = Field(default_factory=_Program)
    outputs: _Outputs = Field(default_factory=_Outputs)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None and not NAME.match(name):
            raise ValueError(f"{name!r}: a job's name is lower-case letters, digits, - and _ (it names a directory "
                             "on the head)")
        return name

    @field_validator("command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        if command is not None and not command.strip():
            raise ValueError("the command is empty")
        return command

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, script: str | None) -> str | None:
        if script is not None and (not script.strip() or script.endswith("/")):
            raise ValueError(f"{script!r} is not a file: give the batch script's path")
        return script


@dataclass(frozen=True)
class LocalFile:
    """A file to upload: where the job file names it (for errors) and where it is."""

    path: Path
    key: str
    line: int | None


@dataclass(frozen=True)
class JobFile:
    """A job as its file describes it; ``digest`` is the file's (a resumed job must be the same job)."""

    path: Path
    name: str
    stack: str | None
    cluster: str
    #: what the job runs, as the journal and the progress show it (``sbatch SCRIPT`` for a batch script)
    command: str
    #: the batch script's name in the job's directory, when the job is one (``sbatch = "..."``)
    sbatch: str | None
    build: str | None
    uploads: tuple[LocalFile, ...]
    outputs: tuple[str, ...]
    output_dir: Path
    release: bool
    digest: str

    @property
    def address(self) -> str:
        """The MPICluster's address in its stack."""
        return f"mpicluster.{self.cluster}"

    @property
    def script(self) -> str:
        """The shell script the run step starts on the head: the command, or the one that submits the batch script
        to Slurm and follows it (slurm.py)."""
        return sbatch_script(self.sbatch, self.name) if self.sbatch is not None else self.command

    def missing(self) -> list[str]:
        """A problem (``FILE:LINE: key: ...``) for each file to upload that is not a readable file."""
        return [f"{self.path}:{f.line or '?'}: {f.key}: {f.path} is not a file" if f.path.exists() else
                f"{self.path}:{f.line or '?'}: {f.key}: {f.path} does not exist" for f in self.uploads
                if not f.path.is_file()]


def _message(err: Any) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "required, missing"
    if kind == "extra_forbidden":
        return "not a job file key (known: name, command, sbatch, inputs, release, [cluster], [program], [outputs])"
    wanted = {"string_type": "a string", "bool_type": "a boolean (true or false)", "list_type": "an array",
              "model_type": "a table", "dict_type": "a table"}.get(kind)
    if wanted:
        return f"expected {wanted}, got {toml_type(value)} {value!r}"
    return str(err["msg"]).removeprefix("Value error, ")


def load_job(path: Path) -> JobFile:
    """Read and check a job file; a ConfigError lists every problem, each as ``FILE:LINE: key: message``."""
    path = path.resolve() if path.exists() else path
    text, data = read_toml(path, str(path))
    try:
        model = _JobFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
            line = key_line(text, loc) if loc else None
            where = f"{path}:{line}" if line else str(path)
            problems.append((line or 0, f"{where}: {'.'.join(loc) or 'top level'}: {_message(err)}"))
        raise ConfigError("\n".join(p for _, p in sorted(problems))) from None
    name = model.name or path.stem
    if not NAME.match(name):
        raise ConfigError(f"{path}: the job is named after its file, {name!r}, which is not a job name (lower-case "
                          "letters, digits, - and _): set name = \"...\"")
    if (model.command is None) == (model.sbatch is None):
        line = key_line(text, ["sbatch"]) if model.sbatch is not None else None
        raise ConfigError(f"{path}:{line}: sbatch: give command or sbatch, not both" if line else
                          f"{path}: command: required, missing (or sbatch = \"SCRIPT\": a batch script to submit to "
                          "Slurm)")
    cluster = model.cluster.name.removeprefix("mpicluster.")
    here = path.parent
    uploads = [LocalFile(here / f, "program.files", key_line(text, ["program", "files"])) for f in model.program.files]
    uploads += [LocalFile(here / f, "inputs", key_line(text, ["inputs"])) for f in model.inputs]
    sbatch = None
    if model.sbatch is not None:
        uploads.append(LocalFile(here / model.sbatch, "sbatch", key_line(text, ["sbatch"])))
        sbatch = PurePosixPath(model.sbatch).name
    command = model.command if model.command is not None else f"sbatch {sbatch}"
    seen: dict[str, LocalFile] = {}
    for upload in uploads:
        other = seen.setdefault(upload.path.name, upload)
        if other is not upload:
            raise ConfigError(f"{path}:{upload.line or '?'}: {upload.key}: {upload.path.name!r} twice (both land in "
                              "the job's directory by their names)")
    output_dir = here / (model.outputs.dir or f"results/{name}")
    return JobFile(path, name, model.cluster.stack, cluster, command, sbatch, model.program.build, tuple(uploads),
                   tuple(model.outputs.files), output_dir, model.release, hashlib.sha256(text.encode()).hexdigest())
