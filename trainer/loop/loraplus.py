"""LoRA+ (`loraplus_lr_ratio`, `loraplus_lr_embedding`): LoRA's B matrices learn `loraplus_lr_ratio` times faster
than the A matrices, LoRA on embeddings at `loraplus_lr_embedding` (peft's create_loraplus_optimizer, as axolotl).

The optimizer is still the one `optimizer:` names; it is handed to the Trainer as an optimizer factory
(transformers' `optimizer_cls_and_kwargs`), which DeepSpeed then wraps like any other optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from peft.optimizers import create_loraplus_optimizer
from transformers import Trainer, TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

# axolotl's default learning rate for LoRA on embedding layers.
DEFAULT_LR_EMBEDDING = 1e-6


def loraplus_optimizer(
    cfg: TrainConfig, args: TrainingArguments, model: torch.nn.Module
) -> tuple[Callable[[], Callable[..., torch.optim.Optimizer]], dict[str, Any]] | None:
    """The Trainer's `optimizer_cls_and_kwargs` for LoRA+, or None without loraplus_lr_ratio."""
    if cfg.loraplus_lr_ratio is None:
        return None
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    if is_optimizer_factory(optimizer_cls) or "params" in kwargs or "model" in kwargs:
        raise ConfigError(
            f"loraplus_lr_ratio: optimizer '{cfg.optimizer}' builds its own parameter groups; use an Adam-style "
            "optimizer (adamw_torch, adamw_bnb_8bit, ...) with LoRA+"
        )
    lr_embedding = cfg.loraplus_lr_embedding if cfg.loraplus_lr_embedding is not None else DEFAULT_LR_EMBEDDING

    def build(opt_model: torch.nn.Module, **optimizer_kwargs: Any) -> torch.optim.Optimizer:
        return create_loraplus_optimizer(
            opt_model,
            optimizer_cls,
            loraplus_lr_ratio=cfg.loraplus_lr_ratio,
            loraplus_lr_embedding=lr_embedding,
            **optimizer_kwargs,
        )

    # transformers calls a factory with no arguments, then the result with (model, **kwargs).
    return (lambda: build), kwargs
