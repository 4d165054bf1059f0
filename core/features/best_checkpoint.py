"""The best checkpoint (axolotl's save_strategy: best, metric_for_best_model, greater_is_better,
load_best_model_at_end): login-node rules, and how the Trainer's save and evaluation intervals are aligned so that
a best model can be loaded at the end.

transformers decides what "best" is (it compares `eval_<metric>` after each evaluation); hpcft only makes the
combination valid before the queue and keeps the best checkpoint out of save_total_limit's rotation
(trainer/loop/checkpoints.py)."""

from __future__ import annotations

from typing import Any


def check_best_checkpoint(cfg: Any) -> None:
    """Raise ValueError (one line naming the key) for a combination transformers or axolotl would refuse later."""
    has_eval = bool(cfg.val_set_size or cfg.test_datasets) and cfg.eval_strategy != "no"
    if cfg.save_strategy == "best" and not cfg.metric_for_best_model:
        raise ValueError(
            "save_strategy: best needs metric_for_best_model (e.g. eval_loss, or loss), which says what is best"
        )
    for key in ("save_strategy: best", "load_best_model_at_end"):
        wanted = cfg.save_strategy == "best" if key.startswith("save") else cfg.load_best_model_at_end
        if wanted and not has_eval:
            raise ValueError(
                f"{key} compares evaluations: set val_set_size (e.g. 0.05) or test_datasets, and no eval_strategy: no"
            )
        if wanted and cfg.evals_per_epoch == 0:
            raise ValueError(f"{key} compares evaluations: evals_per_epoch: 0 turns them off")
    if cfg.load_best_model_at_end and (cfg.save_strategy == "no" or cfg.saves_per_epoch == 0):
        raise ValueError("load_best_model_at_end needs checkpoints: remove save_strategy: no / saves_per_epoch: 0")
    if (cfg.metric_for_best_model or cfg.greater_is_better is not None) and not (
        cfg.save_strategy == "best" or cfg.load_best_model_at_end
    ):
        key = "metric_for_best_model" if cfg.metric_for_best_model else "greater_is_better"
        raise ValueError(f"{key} has no effect without save_strategy: best or load_best_model_at_end: true")
    if cfg.load_best_model_at_end and cfg.rl:
        raise ValueError(f"load_best_model_at_end is not supported with rl: {cfg.rl} yet; remove it")


def align_for_best_model(save: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """With load_best_model_at_end, transformers needs checkpoints at evaluations: the same strategy, and save_steps
    a multiple of eval_steps. Returns the save arguments adjusted to that (rounded up to the next evaluation)."""
    if save.get("save_strategy") == "best":
        return save
    if evaluation.get("eval_strategy") == "epoch":
        return {"save_strategy": "epoch"}
    if evaluation.get("eval_strategy") == "steps":
        every = evaluation.get("eval_steps") or 1
        wanted = save.get("save_steps") or every
        return {"save_strategy": "steps", "save_steps": max(every, -(-wanted // every) * every)}
    return save
