"""Submit a validated job: render its run directory, then sbatch it (or hand it to submitit), and record it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError
from hpcft.core.manifest import update_manifest
from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import record_submission
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
    # What failed after Slurm accepted the job (the index or the manifest not writable): the job runs regardless.
    warnings: list[str] = field(default_factory=list)


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
    from hpcft.core.features.eval_datasets import missing_hub_datasets, nodes_offline
    from hpcft.launcher.jobplan import job_env

    env = job_env(job)
    benchmarks = [] if nodes_offline(env) else missing_hub_datasets(job.cfg, env)
    if benchmarks:
        # A CPU job downloads them rather than the GPU job (validate refuses this when the nodes are offline).
        return True, f"benchmark datasets to download first: {', '.join(benchmarks)}"

    where = prepared_dir(job.cfg)
    if where is None and job.cfg.processor_type:
        # Images are decoded and downloaded on a CPU node, never while GPUs wait (and a bad one fails there first).
        return True, "processor_type: images are prepared in their own job (the cache cannot be checked here)"
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
    from hpcft.launcher.render import render_run_dir, target_run_dir

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if sweep and backend != "sbatch":
        raise ConfigError("--sweep runs as one Slurm job array rendered into job.sbatch; use --backend sbatch")
    if not dry_run:
        from hpcft.launcher.runtimes.image import check_image

        check_image(job)  # a missing .sqsh/.sif is an error now, not a failed job after the queue wait
    if sweep:
        # Each point's train.yaml names files inside the run directory, so choose it before rendering.
        target = target_run_dir(job, out_dir)
        run_dir = render_run_dir(
            job,
            out_dir=target,
            command_line=command_line,
            extra_files=render_sweep_files(sweep, target),
            array=f"0-{len(sweep) - 1}",
        )
        points = [{"index": p.index, "overrides": p.overrides, "output_dir": p.job.cfg.output_dir} for p in sweep]
        try:
            update_manifest(run_dir, sweep={"points": points})
        except OSError as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise ConfigError(f"cannot write {run_dir}/manifest.json ({exc.strerror or exc})") from None
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
            try:
                slurm.scancel(pre_id)  # no preprocessing for a training job that was never queued
            except slurm.SlurmError:
                pass  # the error that stopped the training job is the one to report
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing may look submitted that is not
        raise
    # From here the job is queued: nothing may hide its id. What fails now is a warning, not an error that would
    # make the user submit (and pay for) the same job again.
    warnings = record_submission(run_dir, job_id, backend, preprocess={"job_id": pre_id, "reason": reason})
    return Submission(run_dir, job_id, backend, command, handle, pre_id, reason, warnings)
