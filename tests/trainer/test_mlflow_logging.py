"""MLflow through transformers' MLflowCallback: a tiny run logs its metrics to a `file:` tracking store, read back
with mlflow's own client (no server, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from transformers import Trainer, TrainingArguments

from hpcft.trainer.loop.args import Precision, training_argument_values
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.reporting.metrics import MetricsCallback, tracker_arguments, tracker_environment

ROWS, SEQ = 8, 16


@pytest.fixture(autouse=True)
def fresh_mlflow_process_state():
    """A job is a fresh process; in this one, the previous test's tracking URI and experiment (which
    mlflow.set_experiment also exports as MLFLOW_EXPERIMENT_ID) would stay."""
    import mlflow.tracking._tracking_service.utils as tracking
    import mlflow.tracking.fluent as fluent

    yield
    tracking._tracking_uri = None
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def read_store(uri: str, experiment: str):
    """The runs of an experiment and the client, as a user would read the store afterwards."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    return client, client.search_runs([found.experiment_id])


def test_a_run_writes_its_metrics_to_a_file_store(train_config, tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    cfg = train_config(
        mlflow_tracking_uri=f"file://{store}",
        mlflow_experiment_name="hpcft-test",
        mlflow_run_name="tiny-run",
        max_steps=3,
        micro_batch_size=2,
        logging_steps=1,
    )
    assert tracker_arguments(cfg)["report_to"] == ["mlflow"]
    env = tracker_environment(cfg)
    assert env["MLFLOW_TRACKING_URI"] == f"file://{store}"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "hpcft-test"
    assert env["HF_MLFLOW_LOG_ARTIFACTS"] == "false"
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    args = TrainingArguments(**training_argument_values(cfg, Precision(), None, ROWS, False, 1))
    assert args.run_name == "tiny-run"
    rows = [
        {"input_ids": list(range(3 + i, 3 + i + SEQ)), "labels": list(range(3 + i, 3 + i + SEQ))} for i in range(ROWS)
    ]
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[MetricsCallback(cfg.output_dir)])
    trainer.train()

    client, runs = read_store(f"file://{store}", "hpcft-test")
    (run,) = runs
    assert run.info.run_name == "tiny-run" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    logged = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    # The same losses at the same steps as hpcft's own metrics.jsonl.
    assert [(m.step, round(m.value, 4)) for m in history] == [
        (row["step"], round(row["loss"], 4)) for row in logged if "loss" in row
    ]
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.params["learning_rate"] == str(cfg.learning_rate)  # the Trainer's arguments, as params
    assert not list(store.rglob("model.safetensors"))  # no checkpoint copied without hf_mlflow_log_artifacts


def test_hf_mlflow_log_artifacts_copies_each_checkpoint_into_the_store(train_config, tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    cfg = train_config(
        mlflow_tracking_uri=str(store), hf_mlflow_log_artifacts=True, max_steps=2, save_steps=2, micro_batch_size=2
    )
    env = tracker_environment(cfg)
    assert env["HF_MLFLOW_LOG_ARTIFACTS"] == "true" and env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = TrainingArguments(**training_argument_values(cfg, Precision(), None, ROWS, False, 1))
    rows = [
        {"input_ids": list(range(3 + i, 3 + i + SEQ)), "labels": list(range(3 + i, 3 + i + SEQ))} for i in range(ROWS)
    ]
    Trainer(model=load_model(cfg, load_tokenizer(cfg), Precision()), args=args, train_dataset=rows).train()
    copied = list(store.rglob("checkpoint-2/model.safetensors"))
    assert len(copied) == 1
    saved = Path(cfg.output_dir) / "checkpoint-2" / "model.safetensors"
    assert copied[0].read_bytes() == saved.read_bytes()


def test_no_mlflow_without_its_keys_and_use_mlflow_false_wins(train_config):
    assert tracker_arguments(train_config(max_steps=1))["report_to"] == "none"
    assert tracker_environment(train_config(max_steps=1)) == {}
    off = train_config(max_steps=1, use_mlflow=False, mlflow_experiment_name="x")
    assert tracker_arguments(off)["report_to"] == "none"
    # axolotl switches MLflow on from the experiment name alone; MLflow then picks its own default store.
    on = train_config(max_steps=1, mlflow_experiment_name="x")
    assert tracker_arguments(on)["report_to"] == ["mlflow"]
    assert "MLFLOW_TRACKING_URI" not in tracker_environment(on)
    # The run name, as axolotl picks it: W&B's when W&B logs, else MLflow's.
    named = {"mlflow_experiment_name": "x", "mlflow_run_name": "m", "wandb_name": "w"}
    assert tracker_arguments(train_config(max_steps=1, **named))["run_name"] == "m"
    assert tracker_arguments(train_config(max_steps=1, wandb_project="p", **named))["run_name"] == "w"


def test_a_resumed_job_continues_the_same_mlflow_run(train_config, tmp_path, monkeypatch):
    from hpcft.trainer.reporting.mlflow_logging import RUN_FILE, MlflowRunRecorder, resume_environment

    store = tmp_path / "mlruns"
    keys = {"mlflow_tracking_uri": f"file://{store}", "mlflow_experiment_name": "requeue", "micro_batch_size": 2}
    rows = [
        {"input_ids": list(range(3 + i, 3 + i + SEQ)), "labels": list(range(3 + i, 3 + i + SEQ))} for i in range(ROWS)
    ]

    def run(cfg, resume=None):
        for name, value in tracker_environment(cfg).items():
            monkeypatch.setenv(name, value)
        args = TrainingArguments(**training_argument_values(cfg, Precision(), None, ROWS, False, 1))
        model = load_model(cfg, load_tokenizer(cfg), Precision())
        callbacks = [MetricsCallback(cfg.output_dir), MlflowRunRecorder.from_config(cfg)]
        Trainer(model=model, args=args, train_dataset=rows, callbacks=callbacks).train(resume_from_checkpoint=resume)

    first = train_config(max_steps=2, save_steps=2, **keys)
    assert resume_environment(first) == {}  # nothing recorded yet: a new run
    run(first)
    record = json.loads((Path(first.output_dir) / RUN_FILE).read_text())
    assert record["tracking_uri"] == f"file://{store}"
    # The requeued job: same output_dir, resumes from the checkpoint, with the recorded run id.
    second = train_config(max_steps=4, save_steps=2, **keys)
    env = resume_environment(second)
    assert env == {"MLFLOW_RUN_ID": record["run_id"]}
    monkeypatch.setenv("MLFLOW_RUN_ID", env["MLFLOW_RUN_ID"])
    run(second, resume=str(Path(second.output_dir) / "checkpoint-2"))

    client, runs = read_store(f"file://{store}", "requeue")
    (only,) = runs  # one run across both jobs
    assert [m.step for m in client.get_metric_history(only.info.run_id, "loss")] == [1, 2, 3, 4]
    # Another store: the record does not apply.
    assert resume_environment(train_config(mlflow_tracking_uri=f"file://{tmp_path / 'other'}")) == {}
