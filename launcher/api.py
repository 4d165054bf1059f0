"""hpcft from Python: `from hpcft.launcher import submit`.

    job = submit("cfg.yaml", profile="cscs", nodes=4, overrides=["learning_rate=1e-5"])
    job.wait(); print(job.state, job.exit_status)

backend="sbatch" (default) returns a JobHandle over the rendered job.sbatch; backend="submitit" returns
submitit's own Job (its .result(), .done(), .stdout()...).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import RunRef
from hpcft.launcher.jobs.submit import submit_run
from hpcft.launcher.jobs.sweeps import load_sweep
from hpcft.launcher.logs.job_logs import follow_job


@dataclass
class JobHandle:
    """A submitted sbatch job and its run directory."""

    job_id: str
    run_dir: Path

    @property
    def state(self) -> str:
        """Slurm's state of the job (for a sweep, the first task that has not completed, else COMPLETED)."""
        members = slurm.job_members(self.job_id)
        if not members:
            return "UNKNOWN"
        unfinished = [m for m in members if m.state != "COMPLETED"]
        return (unfinished or members)[0].state

    def done(self) -> bool:
        members = slurm.job_members(self.job_id)
        return bool(members) and all(m.finished for m in members)

    def wait(self, timeout: float | None = None, poll: float = 2.0) -> int:
        """Block until the job ends (logs go nowhere); returns its exit status."""
        return follow_job(RunRef(self.job_id, self.run_dir), out=_Discard(), poll=poll, timeout=timeout)

    def follow(self, timeout: float | None = None) -> int:
        """Print the logs to stdout until the job ends; returns its exit status."""
        return follow_job(RunRef(self.job_id, self.run_dir), out=sys.stdout, timeout=timeout)

    def cancel(self) -> None:
        slurm.scancel(self.job_id)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def submit(
    config: str | Path,
    profile: str,
    *,
    overrides: list[str] | None = None,
    backend: str = "sbatch",
    sweep: list[str] | None = None,
    out_dir: str | Path | None = None,
    **launch: Any,
) -> Any:
    """Render and submit a training config; launch options (nodes=4, time="12:00:00", partition=...) win over
    the config's and the profile's. Returns a JobHandle (sbatch) or a submitit Job (backend="submitit")."""
    from hpcft.launcher.config import load_job

    overrides = list(overrides or [])
    job = load_job(config, profile, overrides=overrides, cli_launch=launch)
    points = load_sweep(config, profile, overrides, launch, sweep, job) if sweep else None
    result = submit_run(
        job, out_dir=out_dir, backend=backend, sweep=points, command_line=["hpcft.launcher.api.submit", str(config)]
    )
    if backend == "submitit":
        return result.handle
    return JobHandle(str(result.job_id), result.run_dir)
