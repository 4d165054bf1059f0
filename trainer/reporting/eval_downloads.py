"""The benchmarks' datasets (lm_eval_tasks, do_bench_eval's bench_dataset) downloaded into the Hugging Face cache
by the CPU preprocessing job, where the Hub is reachable: the training job then finds them cached (and a missing
one fails a cheap CPU job, not a GPU allocation after training)."""

from __future__ import annotations

import os

from hpcft.core.features.eval_datasets import lm_eval_task_name, nodes_offline
from hpcft.core.schema import TrainConfig
from hpcft.trainer.reporting.lm_eval_after_training import lm_eval_wanted


def fetch_eval_datasets(cfg: TrainConfig) -> list[str]:
    """Load (and so cache) every benchmark dataset of the config; what was fetched, for the log."""
    if nodes_offline(dict(os.environ)):
        return []  # nothing to fetch from here; validate has checked the cache on the login node
    fetched = []
    if cfg.do_bench_eval:
        from hpcft.trainer.reporting.bench_eval import load_bench_rows

        load_bench_rows(cfg)
        fetched.append(f"bench_dataset {cfg.bench_dataset or 'default'}")
    if lm_eval_wanted(cfg):
        from lm_eval.tasks import TaskManager

        names = list(dict.fromkeys(lm_eval_task_name(task)[0] for task in cfg.lm_eval_tasks or []))
        # Building lm_eval's tasks loads their datasets through `datasets`, which caches them.
        TaskManager(include_path=cfg.lm_eval_include_path).load(names)
        fetched.append(f"lm_eval_tasks {', '.join(names)}")
    for what in fetched:
        print(f"hpcft: downloaded the datasets of {what} into the Hugging Face cache", flush=True)
    return fetched
