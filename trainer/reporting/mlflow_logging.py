"""MLflow across requeues: the run transformers' MLflowCallback started is recorded in output_dir, and a job that
resumes from a checkpoint continues that run (MLFLOW_RUN_ID) instead of starting a second one, as WANDB_RUN_ID
does for W&B. The logging itself is MLflowCallback's (report_to: mlflow, trainer/reporting/metrics.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.features.mlflow_tracking import mlflow_enabled
from hpcft.core.schema import TrainConfig

RUN_FILE = "mlflow_run.json"


class MlflowRunRecorder(TrainerCallback):
    """After MLflowCallback has started its run (integrations' callbacks come first), note its id in output_dir."""

    def __init__(self, output_dir: str):
        self.path = Path(output_dir) / RUN_FILE

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> MlflowRunRecorder | None:
        return cls(cfg.output_dir) if mlflow_enabled(cfg) else None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not state.is_world_process_zero or "mlflow" not in sys.modules:
            return
        import mlflow

        run = mlflow.active_run()
        if run is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
            self.path.write_text(json.dumps(record) + "\n")


def resume_environment(cfg: TrainConfig) -> dict[str, str]:
    """MLFLOW_RUN_ID of the run this output_dir logged to, for a job that resumes it; nothing when the store has
    changed (another mlflow_tracking_uri) or there is no record."""
    path = Path(cfg.output_dir) / RUN_FILE
    if not mlflow_enabled(cfg) or not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if cfg.mlflow_tracking_uri and record.get("tracking_uri") != cfg.mlflow_tracking_uri:
        return {}
    return {"MLFLOW_RUN_ID": str(record["run_id"])} if record.get("run_id") else {}
