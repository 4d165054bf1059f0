"""When training ends before max_steps on purpose: eval-loss patience (`early_stopping_patience`) and the loss
watchdog (`loss_watchdog_threshold`/`loss_watchdog_patience`), both with axolotl's meaning."""

from __future__ import annotations

import logging
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


class LossWatchdogCallback(TrainerCallback):
    """Stop when the logged training loss is above `threshold` for `patience` logged steps in a row (a diverged
    run stops instead of spending its allocation)."""

    def __init__(self, threshold: float, patience: int = 3):
        self.threshold = threshold
        self.patience = patience
        self.violations = 0

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.violations = self.violations + 1 if loss > self.threshold else 0
        if self.violations >= self.patience:
            log.warning(
                "loss_watchdog: loss %.4f above %g for %d logged steps in a row; stopping at step %d",
                loss,
                self.threshold,
                self.violations,
                state.global_step,
            )
            control.should_training_stop = True


def stopping_callbacks(cfg: TrainConfig) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = []
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    if cfg.loss_watchdog_threshold is not None:
        callbacks.append(LossWatchdogCallback(cfg.loss_watchdog_threshold, cfg.loss_watchdog_patience or 3))
    return callbacks


def stopping_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """TrainingArguments early stopping needs: the metric it watches. The best checkpoint is not reloaded at the
    end (hpcft keeps the final weights; the best checkpoint stays on disk)."""
    if not cfg.early_stopping_patience:
        return {}
    return {"metric_for_best_model": "eval_loss", "greater_is_better": False}
