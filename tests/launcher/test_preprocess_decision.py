"""Whether `hpcft submit` queues a preprocessing job first (launch.preprocess), decided on the login node from the
torch-free cache key (the job pair itself runs in tests/slurm/test_preprocess_job.py)."""

from __future__ import annotations

from hpcft.core.dataset_cache import prepared_dir
from hpcft.launcher.config import load_job
from hpcft.launcher.jobs.submit import preprocessing_job_needed


def test_a_job_only_when_the_prepared_dataset_is_missing(workspace):
    config = workspace / "cfg.yaml"
    job = load_job(config, "local")
    assert preprocessing_job_needed(job, sweep=False, backend="sbatch") == (
        False,
        "the tokenizer's files are not on this machine, so the prepared-dataset cache cannot be checked",
    )
    (workspace / "model" / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    job = load_job(config, "local")
    needed, reason = preprocessing_job_needed(job, sweep=False, backend="sbatch")
    where = prepared_dir(job.cfg)
    assert needed and reason == f"no prepared dataset in {where} yet"
    where.mkdir(parents=True)
    assert preprocessing_job_needed(job, sweep=False, backend="sbatch")[0] is False
    assert preprocessing_job_needed(load_job(config, "local", ["launch.preprocess=job"]), False, "sbatch")[0]
    (workspace / "data" / "chat.jsonl").write_text('{"conversations": []}\n')  # other content, another key
    assert preprocessing_job_needed(load_job(config, "local"), sweep=False, backend="sbatch")[0]
    assert not preprocessing_job_needed(job, sweep=False, backend="submitit")[0]
    assert not preprocessing_job_needed(load_job(config, "local", ["launch.preprocess=inline"]), False, "sbatch")[0]
