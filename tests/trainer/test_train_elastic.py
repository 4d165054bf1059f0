"""Elastic resume policy (batch layout kept across world sizes, refusal, conversion bookkeeping) and a finished
run resumed again: nothing is trained. The multi-node resumes themselves run on Slurm (tests/slurm/test_elastic.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.trainer.loop.checkpoints import COMPLETE_MARKER, FINISHED_MARKER, mark_complete
from hpcft.trainer.loop.elastic import BatchLayout, Conversion, plan_resume, record_attempt
from hpcft.trainer.reporting.metrics import METRICS_FILE

RUN = {"sequence_len": 128, "sample_packing": True, "micro_batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1}


def run_train(cfg, path: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m hpcft.trainer train` on the config written as a train.yaml, one process."""
    path.write_text(yaml.safe_dump(cfg.training_dict()))
    return subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "train", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2", **env},
    )


def read_metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / METRICS_FILE).read_text().splitlines()]


def _checkpoint(root: Path, step: int, world_size: int, micro: int, accumulation: int) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 100}))
    mark_complete(path, step, world_size, micro, accumulation)
    return path


def test_marker_records_layout_and_data_position(tmp_path):
    marker = json.loads((_checkpoint(tmp_path, 10, 2, 2, 3) / COMPLETE_MARKER).read_text())
    assert marker["world_size"] == 2 and marker["gradient_accumulation_steps"] == 3
    assert marker["global_batch_size"] == 12 and marker["samples_seen"] == 120


@pytest.mark.parametrize(("world_size", "accumulation"), [(2, 2), (1, 4), (4, 1)])
def test_resume_keeps_the_global_batch_on_another_world_size(train_config, tmp_path, world_size, accumulation):
    checkpoint = _checkpoint(tmp_path, 10, world_size=2, micro=2, accumulation=2)  # global batch 8
    plan = plan_resume(train_config(micro_batch_size=2, gradient_accumulation_steps=2), checkpoint, world_size)
    assert plan.layout == BatchLayout(world_size, 2, accumulation) and plan.layout.global_batch_size == 8
    assert plan.step == 10 and plan.world_size_changed == (world_size != 2)
    assert not plan.needs_conversion  # no DeepSpeed engine folder in this checkpoint


def test_resume_refuses_a_global_batch_it_cannot_keep_unless_allowed(train_config, tmp_path, caplog):
    checkpoint = _checkpoint(tmp_path, 10, world_size=2, micro=2, accumulation=1)  # global batch 4
    with pytest.raises(ConfigError) as error:
        plan_resume(train_config(micro_batch_size=2), checkpoint, 4)
    message = str(error.value)
    assert "global batch 4" in message and "on 4 rank(s)" in message and "elastic_allow_batch_change" in message
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        plan = plan_resume(train_config(micro_batch_size=2, elastic_allow_batch_change=True), checkpoint, 4)
    assert plan.layout.global_batch_size == 8 and "cannot keep" in caplog.text


def test_a_zero_checkpoint_on_another_world_size_needs_conversion(train_config, tmp_path):
    checkpoint = _checkpoint(tmp_path, 4, world_size=2, micro=2, accumulation=1)
    (checkpoint / "global_step4").mkdir()
    (checkpoint / "latest").write_text("global_step4")
    cfg = train_config(micro_batch_size=2)
    assert plan_resume(cfg, checkpoint, 1).needs_conversion
    assert not plan_resume(cfg, checkpoint, 2).needs_conversion


def test_attempts_are_recorded_in_the_manifest(train_config, tmp_path):
    checkpoint = _checkpoint(tmp_path, 4, world_size=2, micro=2, accumulation=1)
    plan = plan_resume(train_config(micro_batch_size=2), checkpoint, 1)
    (tmp_path / "manifest.json").write_text(json.dumps({"job_id": "77"}))
    record_attempt(str(tmp_path), "77", 2, None, None)
    record_attempt(str(tmp_path), "77", 1, plan, Conversion(str(checkpoint), 2, 1, 0.5, "u"))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    first, second = manifest["attempts"]
    assert manifest["job_id"] == "77"
    assert first["world_size"] == 2 and first["resumed_from"] is None
    assert second["resumed_step"] == 4 and second["gradient_accumulation_steps"] == 2
    assert second["conversion"]["from_world_size"] == 2 and second["conversion"]["seconds"] == 0.5


def test_a_finished_run_resumed_again_trains_nothing(train_config, tmp_path):
    cfg = train_config(**{**RUN, "max_steps": 4, "save_steps": 4})
    config = tmp_path / "train.yaml"
    out = Path(cfg.output_dir)
    assert run_train(cfg, config).returncode == 0
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]

    # The job died after checkpoint-4 but before its final save: the resume makes the model from it, no step 5.
    (out / "model.safetensors").unlink()
    (out / FINISHED_MARKER).unlink()
    done = tmp_path / "done"
    resumed = run_train(cfg, config, HPCFT_DONE_FILE=str(done))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-4 is at the last step (4): nothing to train" in resumed.stdout
    assert (out / "model.safetensors").is_file() and done.exists()

    again = run_train(cfg, config)  # finished: a requeue or a resubmit trains nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds the final model of a run that finished at step 4" in again.stdout
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]


def test_the_deepspeed_config_gets_the_resumed_layout_and_universal_loading(train_config, tmp_path):
    from hpcft.trainer.loop.elastic import deepspeed_for_resume

    checkpoint = _checkpoint(tmp_path, 4, world_size=2, micro=2, accumulation=2)
    (checkpoint / "global_step4").mkdir()
    (checkpoint / "latest").write_text("global_step4")
    rendered = {
        "train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "train_micro_batch_size_per_gpu": 2,
        "zero_optimization": {"stage": 3},
    }
    cfg = train_config(micro_batch_size=2, gradient_accumulation_steps=2)
    on_one = deepspeed_for_resume(rendered, plan_resume(cfg, checkpoint, 1))
    assert (on_one["train_batch_size"], on_one["gradient_accumulation_steps"]) == (8, 4)
    assert on_one["checkpoint"] == {"load_universal": True} and rendered["gradient_accumulation_steps"] == 2
    assert "checkpoint" not in deepspeed_for_resume(rendered, plan_resume(cfg, checkpoint, 2))
