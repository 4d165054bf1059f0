"""The best checkpoint (save_strategy: best, metric_for_best_model, load_best_model_at_end): checked on the login
node, aligned with evaluations, kept by save_total_limit, and the best model loaded at the end of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcft.trainer.loop.args import Precision, training_arguments
from tests.trainer.test_train_single import RUN, run_train, write_config


def test_save_strategy_best_needs_a_metric_and_evaluations(train_config):
    with pytest.raises(ValueError, match="save_strategy: best needs metric_for_best_model"):
        train_config(save_strategy="best", val_set_size=0.1)
    with pytest.raises(ValueError, match="save_strategy: best compares evaluations: set val_set_size"):
        train_config(save_strategy="best", metric_for_best_model="eval_loss")
    with pytest.raises(ValueError, match="metric_for_best_model has no effect without"):
        train_config(metric_for_best_model="eval_loss", val_set_size=0.1)


def test_load_best_model_at_end_moves_checkpoints_to_evaluations(train_config):
    cfg = train_config(load_best_model_at_end=True, val_set_size=0.1, eval_steps=4, save_steps=5)
    args = training_arguments(cfg, Precision(), None, num_train_rows=100, has_eval=True, world_size=1)
    assert (args.save_strategy, args.save_steps, args.eval_steps) == ("steps", 8, 4)  # 5 rounded up to 8
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"


@pytest.mark.slow
def test_a_run_saves_and_loads_its_best_checkpoint(train_config, tmp_path):
    cfg = train_config(
        **{**RUN, "max_steps": 6, "save_steps": None},
        val_set_size=0.1,
        eval_steps=2,
        save_strategy="best",
        metric_for_best_model="eval_loss",
        load_best_model_at_end=True,
        save_total_limit=1,
    )
    result = run_train(write_config(cfg, tmp_path / "train.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = Path(cfg.output_dir)
    state = json.loads(sorted(out.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    best = Path(state["best_model_checkpoint"]).name
    assert (out / best).is_dir()  # kept although save_total_limit is 1
    evals = [log["eval_loss"] for log in state["log_history"] if "eval_loss" in log]
    assert state["best_metric"] == pytest.approx(min(evals))
    assert f"the final model is the best checkpoint, {best} (eval_loss" in result.stdout
