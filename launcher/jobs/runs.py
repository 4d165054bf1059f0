"""Where hpcft keeps track of runs: the run directory's manifest.json, the user's submissions index
($XDG_STATE_HOME/hpcft/jobs.jsonl, so that `hpcft logs 1234` and `hpcft status` find the run directory from
anywhere), and resolving what a user names (JOBID, RUN_DIR, 'latest') to a run."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError
from hpcft.core.manifest import read_manifest, update_manifest
from hpcft.core.quoting import JOB_ID, check_job_id
from hpcft.core.run_paths import RunPaths
from hpcft.launcher import slurm
from hpcft.launcher.resolve_path import absolute_path

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hpcft"


def index_path() -> Path:
    return state_dir() / "jobs.jsonl"


def manifest_job_id(run_dir: Path, manifest: dict[str, Any], *keys: str) -> str | None:
    """A job id the manifest records (`job_id`, or `preprocess.job_id`), checked before it can reach Slurm."""
    value: Any = manifest
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if value in (None, ""):
        return None
    return check_job_id(value, f"{run_dir / 'manifest.json'}: '{'.'.join(keys)}'")


def record_submission(run_dir: Path, job_id: str, backend: str, **manifest_values: Any) -> list[str]:
    """Write the job id into the manifest and the user's submissions index. The job is queued already, so a
    failure here is returned as a warning (with what still works), never raised."""
    submitted_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    warnings = []
    name = None
    try:
        data = update_manifest(run_dir, job_id=job_id, submitted_at=submitted_at, backend=backend, **manifest_values)
        name = data.get("job_name")
    except (OSError, ConfigError) as exc:
        warnings.append(
            f"job {job_id} is queued, but its id could not be written into {run_dir}/manifest.json "
            f"({getattr(exc, 'strerror', None) or exc}); use the job id with hpcft logs/status/cancel"
        )
    entry = {
        "job_id": job_id,
        "run_dir": str(run_dir),
        "name": name,
        "submitted_at": submitted_at,
        "backend": backend,
    }
    index = index_path()
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        with index.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError as exc:
        warnings.append(
            f"job {job_id} is queued, but the submissions index {index} cannot be written "
            f"({exc.strerror or exc}); `hpcft status` will not list it: use `hpcft status {job_id}` or "
            f"`hpcft logs {run_dir}`, and make {index.parent} writable (or set XDG_STATE_HOME)"
        )
    return warnings


def submissions() -> list[dict[str, Any]]:
    """Recorded submissions, oldest first, dropping those whose run directory is gone."""
    try:
        lines = index_path().read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ConfigError(f"{index_path()}: cannot read the submissions index ({exc.strerror or exc})") from None
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        # A line edited by hand or cut short: skipped, as a line that does not parse is; its id never reaches Slurm.
        if not isinstance(entry, dict) or not isinstance(entry.get("run_dir"), str) or not entry["run_dir"]:
            continue
        if not isinstance(entry.get("job_id"), str) or not JOB_ID.fullmatch(entry["job_id"]):
            continue
        try:
            if RunPaths(Path(entry["run_dir"])).manifest.is_file():
                found.append(entry)
        except (OSError, ValueError):
            continue
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
    if path.exists() or path.is_symlink():
        run_dir = absolute_path(path.parent if path.is_file() else path, "run directory")
        manifest = read_manifest(run_dir)
        job_id = manifest_job_id(run_dir, manifest, "job_id")
        manifest_job_id(run_dir, manifest, "preprocess", "job_id")  # checked now, before any command runs
        if not job_id:
            raise ConfigError(
                f"{run_dir} was rendered but never submitted; submit it with "
                f"`sbatch {run_dir}/job.sbatch` or `hpcft submit`"
            )
        return RunRef(job_id, run_dir)
    if not JOB_ID.fullmatch(ref):
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
    base = absolute_path(job.cfg.launch.runs_dir, "launch.runs_dir") / str(job.cfg.launch.job_name)
    run_dir = base / stamp
    n = 1
    while run_dir.exists() or run_dir.is_symlink():  # two renders in the same second
        n += 1
        run_dir = base / f"{stamp}-{n}"
    return run_dir
