"""axolotl's learning-rate shapes on top of transformers' schedules: a quadratic warmup (`lr_quadratic_warmup`),
a cosine that reaches its floor early and stays there (`cosine_constant_lr_ratio`) and jagged restarts
(`jagged_restart_steps`: every N steps the rate drops and warms up again, as ReLoRA needs).

transformers builds its schedules as a LambdaLR (a multiplier of the peak rate per step); a callback multiplies
those per-step factors once the Trainer has made the scheduler, so DeepSpeed, TRL's trainers and resumes (the
scheduler's state is its step count) all see one scheduler.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

Factor = Callable[[int], float]


def quadratic_warmup(inner: Factor, warmup_steps: int) -> Factor:
    """The warmup part of `inner` (linear: step / warmup) squared; unchanged after the warmup."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return inner(step) ** 2
        return inner(step)

    return factor


def cosine_then_constant(warmup_steps: int, total_steps: int, constant_ratio: float, min_ratio: float) -> Factor:
    """Linear warmup, then a half cosine from the peak down to min_ratio x peak that ends after constant_ratio of
    all steps; from there the rate stays at min_ratio x peak (axolotl's cosine_constant_lr_ratio).

    axolotl's formula, except where the constant part would start inside the warmup: axolotl's progress then goes
    negative (the rate jumps around the cosine); here the rate drops to the floor as soon as the warmup ends."""
    constant_from = int(total_steps * constant_ratio)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        if constant_from <= warmup_steps:
            return min_ratio
        progress = (min(step, constant_from) - warmup_steps) / (constant_from - warmup_steps)
        return (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)) + min_ratio

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


def constant_ratio(cfg: TrainConfig) -> float | None:
    """cosine_constant_lr_ratio when it acts: 0 means off, as in axolotl (whose examples set it to 0)."""
    if cfg.lr_scheduler != "cosine" or not cfg.cosine_constant_lr_ratio:
        return None
    return cfg.cosine_constant_lr_ratio


class ScheduleShapeCallback(TrainerCallback):
    """Reshapes the Trainer's LambdaLR at the start of training (after a resume has restored its step)."""

    def __init__(self, cfg: TrainConfig):
        self.quadratic = bool(cfg.lr_quadratic_warmup) and cfg.lr_scheduler == "cosine"
        # A quadratic warmup wins over the floor, as in axolotl (validate warns).
        self.constant_ratio = None if self.quadratic else constant_ratio(cfg)
        self.min_ratio = cfg.cosine_min_lr_ratio or 0.0
        self.restart_steps = cfg.jagged_restart_steps
        self.restart_warmup = cfg.jagged_restart_warmup_steps or 10
        self.restart_anneal = cfg.jagged_restart_anneal_steps or 1
        self.min_scale = cfg.cosine_min_lr_ratio or 0.001

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ScheduleShapeCallback | None:
        quadratic = cfg.lr_quadratic_warmup and cfg.lr_scheduler == "cosine"
        wanted = quadratic or constant_ratio(cfg) or cfg.jagged_restart_steps
        return cls(cfg) if wanted else None

    def shape(self, scheduler: LambdaLR, warmup_steps: int, total_steps: int = 0) -> None:
        """Wrap each of the scheduler's per-step factors, and set the current rate from the wrapped ones."""
        factors = []
        for inner in scheduler.lr_lambdas:
            if self.constant_ratio:
                # Replaces transformers' cosine_with_min_lr, whose cosine spans all steps.
                inner = cosine_then_constant(warmup_steps, total_steps, self.constant_ratio, self.min_ratio)
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
                "lr_quadratic_warmup/cosine_constant_lr_ratio/jagged_restart_steps reshape transformers' schedules, "
                f"but the scheduler is a {type(lr_scheduler).__name__}; remove the scheduler from the DeepSpeed file"
            )
        self.shape(lr_scheduler, args.get_warmup_steps(state.max_steps), state.max_steps)
        parts = []
        if self.quadratic:
            parts.append("quadratic warmup")
        if self.constant_ratio:
            constant_from = int(state.max_steps * self.constant_ratio)
            parts.append(
                f"cosine down to {self.min_ratio} x learning_rate by step {constant_from} of {state.max_steps}, "
                "then constant"
            )
        if self.restart_steps:
            parts.append(
                f"restarts every {self.restart_steps} steps (warmup {self.restart_warmup}, anneal "
                f"{self.restart_anneal})"
            )
        log.info("learning rate: %s", ", ".join(parts))
