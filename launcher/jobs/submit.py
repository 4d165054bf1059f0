"""Submit a validated job: render its run directory, then sbatch it (or hand it to submitit), and record it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError
from hpcft.core.manifest import update_manifest
from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import default_run_dir, record_submission
from hpcft.launcher.jobs.sweeps import SweepPoint, render_sweep_files

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


BACKENDS = ("sbatch", "submitit")


@dataclass
class Submission:
    run_dir: Path
    job_id: str | None  # None for a dry run
    backend: str
    command: list[str] = field(default_factory=list)  # the sbatch command (sbatch backend)
    handle: Any = None  # the submitit Job (submitit backend)
    preprocess_job_id: str | None = None  # the CPU job that prepares the data first, when there is one
    preprocess_reason: str = ""  # why there is (or is not) a preprocessing job


def preprocessing_job_needed(job: Job, sweep: bool, backend: str) -> tuple[bool, str]:
    """Whether to prepare the datasets in their own CPU job before training (launch.preprocess), and why. The
    cache check runs here on the login node, torch-free (launcher/dataset_cache)."""
    mode = job.cfg.launch.preprocess
    if job.cfg.streaming:
        return False, "streaming: the training data is read while training, nothing is prepared ahead"
    if mode == "inline":
        return False, "launch.preprocess: inline"
    if sweep or backend != "sbatch":
        return False, "sweeps and the submitit backend prepare the data inside the training job"
    if mode == "job":
        return True, "launch.preprocess: job"
    from hpcft.core.dataset_cache import prepared_dir

    where = prepared_dir(job.cfg)
    if where is None:
        # Without the tokenizer's files here (a Hub model not in this machine's cache) the cache cannot be checked:
        # the training job prepares the data as before (launch.preprocess: job forces a preprocessing job).
        return False, "the tokenizer's files are not on this machine, so the prepared-dataset cache cannot be checked"
    if where.is_dir():
        return False, f"prepared dataset found in {where}"
    return True, f"no prepared dataset in {where} yet"


def submit_run(
    job: Job,
    *,
    out_dir: str | Path | None = None,
    backend: str = "sbatch",
    dry_run: bool = False,
    sweep: list[SweepPoint] | None = None,
    command_line: list[str] | None = None,
) -> Submission:
    """Render the run directory and submit it; a refused submission leaves no run directory behind."""
    from hpcft.launcher.render import render_run_dir

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if sweep and backend != "sbatch":
        raise ConfigError("--sweep runs as one Slurm job array rendered into job.sbatch; use --backend sbatch")
    if not dry_run:
        from hpcft.launcher.runtimes.image import check_image

        check_image(job)  # a missing .sqsh/.sif is an error now, not a failed job after the queue wait
    if sweep:
        # Each point's train.yaml names files inside the run directory, so choose it before rendering.
        target = Path(out_dir).expanduser().resolve() if out_dir else default_run_dir(job)
        run_dir = render_run_dir(
            job,
            out_dir=target,
            command_line=command_line,
            extra_files=render_sweep_files(sweep, target),
            array=f"0-{len(sweep) - 1}",
        )
        update_manifest(
            run_dir,
            sweep={
                "points": [
                    {"index": p.index, "overrides": p.overrides, "output_dir": p.job.cfg.output_dir} for p in sweep
                ]
            },
        )
    else:
        run_dir = render_run_dir(job, out_dir=out_dir, command_line=command_line)
    script = run_dir / "job.sbatch"
    preprocess, reason = preprocessing_job_needed(job, bool(sweep), backend)
    command = slurm.sbatch_argv(script, slurm.dependency_args("<preprocess>") if preprocess else None)
    if dry_run:
        return Submission(run_dir, None, backend, command, preprocess_reason=reason)
    pre_id = None
    try:
        if backend == "submitit":
            from hpcft.launcher.jobplan import make_plan
            from hpcft.launcher.jobs.submitit_backend import submit_with_submitit

            handle = submit_with_submitit(job, make_plan(job, run_dir))
            job_id, command = str(handle.job_id), []
        else:
            handle = None
            if preprocess:
                pre_id = slurm.submit_batch(run_dir / "preprocess.sbatch", cwd=run_dir)
            extra = slurm.dependency_args(pre_id) if pre_id else None
            job_id = slurm.submit_batch(script, cwd=run_dir, extra_args=extra)
            command = slurm.sbatch_argv(script, extra)
    except BaseException:
        if pre_id:
            slurm.scancel(pre_id)  # no preprocessing for a training job that was never queued
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing may look submitted that is not
        raise
    update_manifest(run_dir, preprocess={"job_id": pre_id, "reason": reason})
    record_submission(run_dir, job_id, backend)
    return Submission(run_dir, job_id, backend, command, handle, pre_id, reason)
