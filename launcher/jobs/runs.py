"""Where hpcft keeps track of runs: the run directory's manifest.json, the user's submissions index
($XDG_STATE_HOME/hpcft/jobs.jsonl, so that `hpcft logs 1234` and `hpcft status` find the run directory from
anywhere), and resolving what a user names (JOBID, RUN_DIR, 'latest') to a run."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError
from hpcft.core.manifest import read_manifest, update_manifest
from hpcft.core.run_paths import RunPaths
from hpcft.launcher import slurm

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hpcft"


def index_path() -> Path:
    return state_dir() / "jobs.jsonl"


def record_submission(run_dir: Path, job_id: str, backend: str) -> None:
    """Write the job id into the manifest and the user's submissions index."""
    submitted_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = update_manifest(run_dir, job_id=job_id, submitted_at=submitted_at, backend=backend)
    entry = {
        "job_id": job_id,
        "run_dir": str(run_dir),
        "name": data.get("job_name"),
        "submitted_at": submitted_at,
        "backend": backend,
    }
    index = index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    with index.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def submissions() -> list[dict[str, Any]]:
    """Recorded submissions, oldest first, dropping those whose run directory is gone."""
    try:
        lines = index_path().read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if RunPaths(Path(entry.get("run_dir", ""))).manifest.is_file():
            found.append(entry)
    return found


# ---------------------------------------------------------------- finding a run


@dataclass
class RunRef:
    """What a user named: a job id, and the run directory when the job is hpcft's."""

    job_id: str
    run_dir: Path | None = None


def resolve_run(ref: str | None) -> RunRef:
    """JOBID, RUN_DIR, or 'latest' (also when ref is None) -> the job id and its run directory."""
    if ref in (None, "latest"):
        entries = submissions()
        if not entries:
            raise ConfigError(
                f"no hpcft job submitted yet (nothing in {index_path()}); give a job id or a run directory"
            )
        return RunRef(entries[-1]["job_id"], Path(entries[-1]["run_dir"]))
    path = Path(ref).expanduser()
    if path.exists():
        run_dir = (path.parent if path.is_file() else path).resolve()
        job_id = read_manifest(run_dir).get("job_id")
        if not job_id:
            raise ConfigError(
                f"{run_dir} was rendered but never submitted; submit it with "
                f"`sbatch {run_dir}/job.sbatch` or `hpcft submit`"
            )
        return RunRef(str(job_id), run_dir)
    if not re.fullmatch(r"\d+(_\d+)?", ref):
        raise ConfigError(f"'{ref}' is neither a job id, a run directory, nor 'latest'")
    return RunRef(ref, _run_dir_of(ref))


def _run_dir_of(job_id: str) -> Path | None:
    base = job_id.split("_")[0]
    for entry in reversed(submissions()):
        if entry["job_id"] == base:
            return Path(entry["run_dir"])
    # Submitted by hand (`sbatch job.sbatch`) or from another machine: hpcft submits from the run directory,
    # and Slurm remembers each job's working directory.
    for member in slurm.job_members(base):
        if member.work_dir and RunPaths(Path(member.work_dir)).manifest.is_file():
            return Path(member.work_dir)
    return None


def recent_runs(include_all: bool, max_age_s: float = 86400) -> list[RunRef]:
    """Recorded submissions: all of them, or those submitted in the last day."""
    now = time.time()
    runs = []
    for entry in submissions():
        try:
            age = now - time.mktime(time.strptime(entry["submitted_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        except (KeyError, ValueError):
            age = 0
        if include_all or age <= max_age_s:
            runs.append(RunRef(entry["job_id"], Path(entry["run_dir"])))
    return runs


def default_run_dir(job: Job) -> Path:
    """<runs_dir>/<job_name>/<timestamp>, absolute, not taken yet (nothing is created here)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(job.cfg.launch.runs_dir).expanduser() / str(job.cfg.launch.job_name)
    run_dir = (base / stamp).resolve()
    n = 1
    while run_dir.exists():  # two renders in the same second
        n += 1
        run_dir = (base / f"{stamp}-{n}").resolve()
    return run_dir
