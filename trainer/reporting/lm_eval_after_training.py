"""`lm_eval_tasks`: lm-evaluation-harness on the final model, in the same job after the final save (as axolotl's
LMEvalPlugin does after training), on the first node only.

Rank 0 runs it after the process group is gone (the other ranks have exited, so no collective waits on it), in a
child process: the trained model's memory is freed and the harness's own Accelerator does not find torchrun's
variables. Results: `<output_dir>/lm_eval_results.json` (a copy in the run folder), one line per task on stdout,
and the trackers' metrics (`lm_eval/<task>/<metric>`).

    python -m hpcft.trainer.reporting.lm_eval_after_training REQUEST.json
        (the child: one lm_eval run, results as JSON)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpcft.core.features.eval_datasets import lm_eval_task_name
from hpcft.core.protocol import run_dir_from_env
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

RESULTS_FILE = "lm_eval_results.json"
DEFAULT_BATCH_SIZE = 8  # axolotl's
# torchrun's and Slurm's view of the training job: the child is one process on its own.
_DISTRIBUTED_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_ERROR_FILE",
)


@dataclass(frozen=True)
class LmEvalRequest:
    """One lm_eval run: the tasks that share a number of few-shot examples."""

    model_args: dict[str, Any]
    tasks: list[str]
    num_fewshot: int | None
    batch_size: int
    device: str
    include_path: str | None
    output: str


def lm_eval_wanted(cfg: TrainConfig) -> bool:
    return bool(cfg.lm_eval_tasks) and cfg.lm_eval_post_train is not False


def model_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """lm_eval's `hf` model arguments for the final model: output_dir in the dtype it was saved in, or for an
    adapter run base_model with the adapter from output_dir (a mapping, so a path may hold any character)."""
    if cfg.lm_eval_model:
        args: dict[str, Any] = {"pretrained": cfg.lm_eval_model}
    elif cfg.adapter:
        args = {"pretrained": cfg.base_model, "peft": cfg.output_dir, "tokenizer": cfg.output_dir, "dtype": "auto"}
        if cfg.model_revision:
            args["revision"] = cfg.model_revision
    else:
        args = {"pretrained": cfg.output_dir, "tokenizer": cfg.output_dir, "dtype": "auto"}
    if cfg.trust_remote_code:
        args["trust_remote_code"] = True
    return args


def lm_eval_requests(cfg: TrainConfig, device: str) -> list[LmEvalRequest]:
    """axolotl's grouping: `task:N` runs with N few-shot examples, the tasks without `:N` with each task's own."""
    by_shots: dict[int | None, list[str]] = defaultdict(list)
    for task in cfg.lm_eval_tasks or []:
        name, shots = lm_eval_task_name(task)
        by_shots[shots].append(name)
    out = Path(cfg.output_dir) / "lm_eval"
    return [
        LmEvalRequest(
            model_args=model_arguments(cfg),
            tasks=tasks,
            num_fewshot=shots,
            batch_size=cfg.lm_eval_batch_size or DEFAULT_BATCH_SIZE,
            device=device,
            include_path=cfg.lm_eval_include_path,
            output=str(out / f"results-{'default' if shots is None else shots}-shot.json"),
        )
        for shots, tasks in by_shots.items()
    ]


def child_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _DISTRIBUTED_ENV}
    if env.get("HF_DATASETS_DISABLE_PROGRESS_BARS"):  # a batch log (progress.py): lm_eval's own tqdm bars off too
        env.setdefault("TQDM_DISABLE", "1")
    return env


def run_request(request: LmEvalRequest) -> dict[str, Any]:
    """Run one request in a child process; its results (lm_eval's `results`, `n-shot`, `versions`)."""
    Path(request.output).parent.mkdir(parents=True, exist_ok=True)
    spec = Path(request.output).with_suffix(".request.json")
    spec.write_text(json.dumps(asdict(request)))
    done = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer.reporting.lm_eval_after_training", str(spec)], env=child_environment()
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"lm_eval_tasks {','.join(request.tasks)}: lm-evaluation-harness failed (exit code {done.returncode}; "
            "its error is above); the trained model is saved in output_dir"
        )
    return json.loads(Path(request.output).read_text())


def scores(results: dict[str, Any]) -> dict[str, float]:
    """`{task: {"acc,none": 0.4, "acc_stderr,none": 0.01}}` -> `{"lm_eval/task/acc": 0.4, ...}`: the number metrics,
    stderr included, filter named only when it is not lm_eval's default (`none`)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            name = metric if filter_name == "none" else f"{metric}/{filter_name}"
            out[f"lm_eval/{task}/{name}"] = float(value)
    return out


def summary_lines(results: dict[str, Any]) -> list[str]:
    """One line per task: `lm_eval arc_easy  acc 0.4120 ±0.0101  acc_norm 0.3980 ±0.0100`."""
    lines = []
    for task, values in results.items():
        parts = []
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            shown = metric if filter_name == "none" else f"{metric}/{filter_name}"
            error = values.get(f"{metric}_stderr,{filter_name}")
            parts.append(f"{shown} {value:.4f}" + (f" ±{error:.4f}" if isinstance(error, (int, float)) else ""))
        lines.append(f"lm_eval {task}  " + "  ".join(parts))
    return lines


def run_lm_eval(cfg: TrainConfig, step: int, device: str) -> dict[str, float]:
    """Every request of the config; writes the results file (and its copy in the run folder), prints the summary
    and returns the scores for the trackers."""
    merged: dict[str, Any] = {"results": {}, "n-shot": {}, "versions": {}, "model_args": model_arguments(cfg)}
    for request in lm_eval_requests(cfg, device):
        print(f"hpcft: lm_eval: {', '.join(request.tasks)} on {request.model_args['pretrained']}", flush=True)
        found = run_request(request)
        for key in ("results", "n-shot", "versions"):
            merged[key].update(found.get(key) or {})
    merged["step"] = step
    target = Path(cfg.output_dir) / RESULTS_FILE
    target.write_text(json.dumps(merged, indent=2, default=str))
    run_dir = run_dir_from_env()
    if run_dir and run_dir.is_dir():
        shutil.copyfile(target, run_dir / RESULTS_FILE)
    for line in summary_lines(merged["results"]):
        print(line, flush=True)
    print(f"hpcft: lm_eval results: {target}", flush=True)
    return scores(merged["results"])


def log_to_trackers(values: dict[str, float], step: int) -> list[str]:
    """The scores into the runs the Trainer's trackers used (ended or ending: logged by id); the trackers that took
    them. A tracker that fails is a warning: the scores are in the results file already."""
    done = []
    for name, write in (("mlflow", _to_mlflow), ("wandb", _to_wandb), ("tensorboard", _to_tensorboard)):
        try:
            if values and write(values, step):
                done.append(name)
        except Exception as exc:  # noqa: BLE001 - any tracker's error: say so, keep the job's result
            log.warning("lm_eval: could not log the scores to %s: %s", name, exc)
    return done


def _to_mlflow(values: dict[str, float], step: int) -> bool:
    if "mlflow" not in sys.modules:  # imported by MLflowCallback when MLflow logged this run
        return False
    import mlflow
    from mlflow.entities import Metric

    run = mlflow.last_active_run()
    if run is None:
        return False
    stamp = int(run.info.end_time or run.info.start_time)
    mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[Metric(k, v, stamp, step) for k, v in values.items()])
    return True


def _to_wandb(values: dict[str, float], step: int) -> bool:
    if "wandb" not in sys.modules:
        return False
    import wandb

    if wandb.run is None:
        return False
    wandb.run.log(values)
    wandb.run.summary.update(values)
    return True


def _to_tensorboard(values: dict[str, float], step: int) -> bool:
    folder = os.environ.get("TENSORBOARD_LOGGING_DIR")  # set by tracker_environment when use_tensorboard
    if not folder:
        return False
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder)
    for key, value in values.items():
        writer.add_scalar(key, value, step)
    writer.close()
    return True


def evaluate_final_model(cfg: TrainConfig, step: int) -> str | None:
    """Rank 0, after training: run lm_eval_tasks and log the scores; an error message, or None."""
    import gc

    import torch

    gc.collect()  # the caller has dropped the Trainer: give its memory back before the child loads the model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        values = run_lm_eval(cfg, step, "cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, OSError, json.JSONDecodeError) as exc:
        return str(exc)
    log_to_trackers(values, step)
    return None


def evaluate_request(request: LmEvalRequest) -> dict[str, Any]:
    """The child's work: one simple_evaluate, only the parts of its answer worth keeping."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    # lm_eval indexes its ~14,000 task files unless the tasks are all in include_path (seconds on a busy node).
    manager = TaskManager(include_path=request.include_path, include_defaults=False) if request.include_path else None
    if manager is None or not set(request.tasks) <= set(manager.all_tasks):
        manager = TaskManager(include_path=request.include_path)
    found = lm_eval.simple_evaluate(
        model="hf",
        model_args=request.model_args,
        tasks=request.tasks,
        num_fewshot=request.num_fewshot,
        batch_size=request.batch_size,
        device=request.device,
        task_manager=manager,
        log_samples=False,
    )
    if found is None:  # not rank 0 of a distributed lm_eval: cannot happen in the child, which runs alone
        raise RuntimeError("lm-evaluation-harness returned no results")
    return {key: found.get(key) for key in ("results", "n-shot", "versions", "higher_is_better")}


def main(argv: list[str]) -> int:
    request = LmEvalRequest(**json.loads(Path(argv[0]).read_text()))
    results = evaluate_request(request)
    Path(request.output).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
