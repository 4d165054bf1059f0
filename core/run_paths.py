"""The run directory's layout in one object: every file and folder `hpcft render` writes and the job fills, with
Slurm's filename patterns for the logs. render, submit, the templates (given a RunPaths, not a spelling of it),
logs, status and cancel all ask it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcft.core import protocol

JOB_LOG = "slurm"  # job.sbatch's own log (a job array's too)
PREPROCESS_LOG = "preprocess"
DOCTOR_LOG = "doctor"
LOG_KINDS = (PREPROCESS_LOG, JOB_LOG, DOCTOR_LOG)
ONE_JOB = "%j"  # Slurm's filename pattern for the job id
ARRAY_TASK = "%A_%a"  # ... and for a job array's id and task index
STREAMS = ("out", "err")


@dataclass(frozen=True)
class RunPaths:
    """Where each file of one run directory lives."""

    root: Path

    @property
    def job_script(self) -> Path:
        return self.root / "job.sbatch"

    @property
    def preprocess_script(self) -> Path:
        return self.root / "preprocess.sbatch"

    @property
    def train_yaml(self) -> Path:
        return self.root / protocol.TRAIN_YAML

    @property
    def manifest(self) -> Path:
        return self.root / protocol.MANIFEST

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def submitit(self) -> Path:
        """submitit's folder: its pickles and its own logs (<job id>_<task>_log.out)."""
        return self.root / "submitit"

    @property
    def torchelastic(self) -> Path:
        return self.root / protocol.TORCHELASTIC_DIR

    @property
    def stacks(self) -> Path:
        return self.root / protocol.STACKS_DIR

    def log(self, kind: str, stream: str, job: str = ONE_JOB) -> Path:
        """A job's stdout ("out") or stderr ("err") file; `job` is a Slurm pattern or a job id."""
        return self.logs / f"{kind}-{job}.{stream}"

    def stop_file(self, job_id: str) -> Path:
        return protocol.stop_file(self.root, job_id)

    def job_logs(self, job_ids: list[str]) -> list[Path]:
        """The log files of these jobs that exist: each kind's, an array's tasks' and submitit's (unsorted)."""
        names = []
        for job_id in job_ids:
            for stream in STREAMS:
                names += [f"{kind}-{job_id}.{stream}" for kind in LOG_KINDS]
                names += [f"{kind}-{job_id}_*.{stream}" for kind in LOG_KINDS]  # array tasks: %A_%a
                names.append(f"{job_id}_*_log.{stream}")  # submitit: <id>_<task>, <id>_<index>_<task>
        found: dict[Path, None] = {}
        for folder in (self.logs, self.submitit):
            if folder.is_dir():
                for name in names:
                    found.update(dict.fromkeys(p for p in folder.glob(name) if p.is_file()))
        return list(found)
