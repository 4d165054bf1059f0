"""Training metrics: one JSON line per logging step in <output_dir>/metrics.jsonl and a readable line on rank 0's
stdout (progress.py), plus the trackers (wandb, tensorboard) that transformers already knows how to feed.
Each training start (first run or resume) is appended to <output_dir>/starts.jsonl, so a curve drawn over
several allocations can mark where it restarted."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.features.mlflow_tracking import is_file_store, mlflow_enabled
from hpcft.core.protocol import METRICS_FILE, STARTS_FILE
from hpcft.core.schema import TrainConfig
from hpcft.trainer.reporting.progress import StepClock, format_eval_line, format_step_line

log = logging.getLogger("hpcft.trainer")

TRAIN_KEYS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "epoch")
# What preference tuning (rl:) adds to each line, from TRL's log names: the implicit rewards of the chosen and
# rejected answers, the share of pairs ranked right, and the mean chosen - rejected margin.
PREFERENCE_KEYS = {
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    # reward_model (TRL's RewardTrainer): the share of pairs scored chosen > rejected, and the mean margin.
    "accuracy": "reward_accuracy",
    "margin": "reward_margin",
}


def _number(value: Any) -> float | int | None:
    """JSON has no NaN/inf: those become null so every line parses."""
    if value is None:
        return None
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_metrics_line(
    step: int,
    loss: float | None,
    lr: float | None,
    grad_norm: float | None,
    tokens_per_s: float | None,
    epoch: float | None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The one metrics line: a JSON object with TRAIN_KEYS in that order, then the `extra` values (preference
    tuning's rewards) when there are any."""
    values = (step, loss, lr, grad_norm, tokens_per_s, epoch)
    line = {key: _number(value) for key, value in zip(TRAIN_KEYS, values, strict=True)}
    line.update({key: _number(value) for key, value in (extra or {}).items()})
    return json.dumps(line)


def preference_values(logs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The PREFERENCE_KEYS present in a log event (with `prefix`: eval_), under their metrics-line names."""
    return {prefix + name: logs[prefix + key] for key, name in PREFERENCE_KEYS.items() if prefix + key in logs}


class MetricsCallback(TrainerCallback):
    """Turns the Trainer's log events into metrics lines; rank 0 only, so each step is written once."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self._last_time = 0.0
        self._last_tokens = 0
        self.clock = StepClock()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen
        # On resume the Trainer has already loaded the checkpoint's state: global_step is where we continue.
        self.clock.start(state.global_step)
        if state.is_world_process_zero:
            self._append(
                self.path.with_name(STARTS_FILE),
                json.dumps({"step": state.global_step, "max_steps": state.max_steps, "time": time.time()}),
            )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs,
    ):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            # num_input_tokens_seen is gathered over all ranks by the Trainer (non-padding tokens).
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            elapsed = now - self._last_time
            # No token counted at all: the batches have no input_ids to count (ORPO's and SimPO's): unknown, not 0.
            counted = tokens > 0
            tokens_per_s = (tokens - self._last_tokens) / elapsed if elapsed > 0 and counted else None
            self._last_time, self._last_tokens = now, tokens
            line = format_metrics_line(
                state.global_step,
                logs.get("loss"),
                logs.get("learning_rate"),
                logs.get("grad_norm"),
                tokens_per_s,
                logs.get("epoch", state.epoch),
                preference_values(logs),
            )
            shown = format_step_line(
                state.global_step,
                state.max_steps,
                _number(logs.get("loss")),
                _number(logs.get("learning_rate")),
                _number(logs.get("grad_norm")),
                tokens_per_s,
                self.clock.elapsed(),
                self.clock.left(state.global_step, state.max_steps),
                {k: _number(v) for k, v in preference_values(logs).items()},
            )
        elif "eval_loss" in logs:
            values = {
                "step": state.global_step,
                "eval_loss": logs["eval_loss"],
                "epoch": logs.get("epoch", state.epoch),
                **preference_values(logs, "eval_"),
            }
            line = json.dumps({key: _number(value) for key, value in values.items()})
            shown = format_eval_line(state.global_step, state.max_steps, _number(logs["eval_loss"]))
        else:
            return
        print(shown, flush=True)
        self._append(self.path, line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(line + "\n")


def tracker_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """report_to / run_name for TrainingArguments; the trackers read the rest from `tracker_environment`."""
    report_to: list[str] = []
    if cfg.wandb_project and cfg.wandb_mode != "disabled":
        if importlib.util.find_spec("wandb") is None:
            log.warning(
                "wandb_project is set but wandb is not installed: not logging to wandb "
                "(pip install wandb, or remove wandb_project)"
            )
        else:
            report_to.append("wandb")
    if cfg.use_tensorboard:
        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            log.warning("use_tensorboard: true but tensorboard is not installed: not logging to tensorboard")
        else:
            report_to.append("tensorboard")
    if mlflow_enabled(cfg):
        if importlib.util.find_spec("mlflow") is None:
            log.warning(
                "MLflow logging is on but mlflow is not installed: not logging to MLflow (pip install 'hpcft[train]')"
            )
        else:
            report_to.append("mlflow")  # transformers' MLflowCallback: it logs from rank 0 only
    args: dict[str, Any] = {"report_to": report_to or "none"}
    # One run name for every tracker, as axolotl picks it: W&B's when W&B logs, else MLflow's.
    run_name = cfg.wandb_name if cfg.wandb_project else None
    run_name = run_name or (cfg.mlflow_run_name if mlflow_enabled(cfg) else None) or cfg.wandb_name
    if run_name:
        args["run_name"] = run_name
    return args


def tracker_environment(cfg: TrainConfig) -> dict[str, str]:
    """The variables transformers' WandbCallback, MLflowCallback and TensorBoardCallback read (the caller sets
    them)."""
    env = {"TENSORBOARD_LOGGING_DIR": str(Path(cfg.output_dir) / "tensorboard")} if cfg.use_tensorboard else {}
    env |= mlflow_environment(cfg)
    if not cfg.wandb_project:
        return env
    env |= {"WANDB_PROJECT": cfg.wandb_project, "WANDB_MODE": cfg.wandb_mode or os.environ.get("WANDB_MODE", "online")}
    optional = {
        "WANDB_ENTITY": cfg.wandb_entity,
        "WANDB_RUN_ID": cfg.wandb_run_id,
        "WANDB_WATCH": cfg.wandb_watch,
        "WANDB_LOG_MODEL": cfg.wandb_log_model,
    }
    env.update({key: value for key, value in optional.items() if value})
    if cfg.wandb_run_id:
        env["WANDB_RESUME"] = "allow"  # a requeued job continues the same wandb run
    return env


def mlflow_environment(cfg: TrainConfig) -> dict[str, str]:
    """MLflowCallback's settings. Credentials are not among them: MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN come
    from the submitter's environment (the profile's secret_env)."""
    if not mlflow_enabled(cfg):
        return {}
    env = {"HF_MLFLOW_LOG_ARTIFACTS": "true" if cfg.hf_mlflow_log_artifacts else "false"}
    if cfg.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = cfg.mlflow_tracking_uri
        if is_file_store(cfg.mlflow_tracking_uri):
            # MLflow 3 refuses a folder store unless asked: the user asked for one (a shared folder needs no
            # server, which is what a cluster without one has).
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if cfg.mlflow_experiment_name:
        env["MLFLOW_EXPERIMENT_NAME"] = cfg.mlflow_experiment_name
    return env
