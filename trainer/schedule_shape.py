"""axolotl's learning-rate shapes on top of transformers' schedules: a quadratic warmup (`lr_quadratic_warmup`) and
jagged restarts (`jagged_restart_steps`: every N steps the rate drops and warms up again, as ReLoRA needs).

transformers builds its schedules as a LambdaLR (a multiplier of the peak rate per step); a callback multiplies
those per-step factors once the Trainer has made the scheduler, so DeepSpeed, TRL's trainers and resumes (the
scheduler's state is its step count) all see one scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.launcher.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

Factor = Callable[[int], float]


def quadratic_warmup(inner: Factor, warmup_steps: int) -> Factor:
    """The warmup part of `inner` (linear: step / warmup) squared; unchanged after the warmup."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return inner(step) ** 2
        return inner(step)

    return factor


def jagged_restarts(
    inner: Factor, restart_steps: int, warmup_steps: int = 10, anneal_steps: int = 1, min_scale: float = 0.001
) -> Factor:
    """`inner` scaled down to min_scale at each restart (every restart_steps steps, the first restart excepted):
    annealed over the anneal_steps before it, warmed up linearly over the warmup_steps after it."""

    def factor(step: int) -> float:
        if step < restart_steps - anneal_steps:
            return inner(step)
        into = step % restart_steps
        if into < warmup_steps:
            progress = min(1.0, into / warmup_steps)
        elif into > restart_steps - anneal_steps:
            progress = min(1.0, (restart_steps - into) / anneal_steps)
        else:
            progress = 1.0
        return inner(step) * (progress * (1 - min_scale) + min_scale)

    return factor


class ScheduleShapeCallback(TrainerCallback):
    """Reshapes the Trainer's LambdaLR at the start of training (after a resume has restored its step)."""

    def __init__(self, cfg: TrainConfig):
        self.quadratic = bool(cfg.lr_quadratic_warmup) and cfg.lr_scheduler == "cosine"
        self.restart_steps = cfg.jagged_restart_steps
        self.restart_warmup = cfg.jagged_restart_warmup_steps or 10
        self.restart_anneal = cfg.jagged_restart_anneal_steps or 1
        self.min_scale = cfg.cosine_min_lr_ratio or 0.001

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ScheduleShapeCallback | None:
        wanted = (cfg.lr_quadratic_warmup and cfg.lr_scheduler == "cosine") or cfg.jagged_restart_steps
        return cls(cfg) if wanted else None

    def shape(self, scheduler: LambdaLR, warmup_steps: int) -> None:
        """Wrap each of the scheduler's per-step factors, and set the current rate from the wrapped ones."""
        factors = []
        for inner in scheduler.lr_lambdas:
            if self.quadratic:
                inner = quadratic_warmup(inner, warmup_steps)
            if self.restart_steps:
                inner = jagged_restarts(
                    inner, self.restart_steps, self.restart_warmup, self.restart_anneal, self.min_scale
                )
            factors.append(inner)
        # Closures, not objects: LambdaLR.state_dict stores no state for plain functions, so a checkpoint's
        # scheduler file stays what transformers expects.
        scheduler.lr_lambdas = factors
        # The rate of the coming step was set from the unshaped factors when the scheduler was made (or resumed).
        step = max(scheduler.last_epoch, 0)
        for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, factors, strict=True):
            group["lr"] = base * factor(step)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, lr_scheduler=None, **kwargs
    ):
        if not isinstance(lr_scheduler, LambdaLR):
            raise RuntimeError(
                f"lr_quadratic_warmup/jagged_restart_steps reshape transformers' schedules, but the scheduler is a "
                f"{type(lr_scheduler).__name__}; remove the scheduler from the DeepSpeed file"
            )
        self.shape(lr_scheduler, args.get_warmup_steps(state.max_steps))
        log.info(
            "learning rate: %s%s",
            "quadratic warmup" if self.quadratic else "",
            (", " if self.quadratic else "")
            + (
                f"restarts every {self.restart_steps} steps (warmup {self.restart_warmup}, anneal "
                f"{self.restart_anneal})"
                if self.restart_steps
                else ""
            ),
        )
