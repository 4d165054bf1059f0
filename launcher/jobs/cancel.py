"""Cancelling a job, and waiting for a job to reach a state (after cancel, and in tests)."""

from __future__ import annotations

import time

from hpcft.core.manifest import read_manifest
from hpcft.core.quoting import check_job_id
from hpcft.core.run_paths import RunPaths
from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import RunRef, manifest_job_id
from hpcft.launcher.slurm import JobInfo, SlurmError


def cancel_run(run: RunRef) -> list[str]:
    """Cancel the run's jobs: the training job and, when it has one, its preprocessing job. Returns their ids."""
    cancelled = []
    manifest = read_manifest(run.run_dir) if run.run_dir and RunPaths(run.run_dir).manifest.is_file() else {}
    # Every id is checked before the first scancel: a manifest holding `--me` cancels nothing at all.
    job_id = check_job_id(run.job_id, "job id")
    pre = manifest_job_id(run.run_dir, manifest, "preprocess", "job_id") if run.run_dir else None
    if pre and "_" not in run.job_id and run.job_id != pre:
        if any(not m.finished for m in slurm.job_members(pre)):
            slurm.scancel(pre)
            cancelled.append(pre)
    slurm.scancel(job_id)
    return [*cancelled, job_id]


def wait_for_state(job_id: str, states: set[str], timeout: float = 30, poll: float = 0.5) -> list[JobInfo]:
    """Poll until every member of the job is in one of `states` (used after cancel, and by tests)."""
    deadline = time.monotonic() + timeout
    while True:
        members = slurm.job_members(job_id)
        if members and all(m.state in states for m in members):
            return members
        if time.monotonic() > deadline:
            seen = ", ".join(f"{m.job_id}={m.state}" for m in members) or "unknown"
            raise SlurmError(f"job {job_id} did not reach {'/'.join(sorted(states))} within {timeout:.0f} s ({seen})")
        time.sleep(poll)
