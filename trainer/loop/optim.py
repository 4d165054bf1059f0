"""Map axolotl's optimizer and learning-rate-schedule keys onto transformers' TrainingArguments."""

from __future__ import annotations

from typing import Any

from hpcft.core.checks.scheduler_kwargs import effective_scheduler
from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig, check_optimizer_name


def optimizer_name(name: str) -> str:
    """The transformers optimizer name for an axolotl `optimizer:` value; ConfigError naming the key if unknown.

    The schema already checked it on the login node; a train.yaml edited by hand is checked again here."""
    try:
        return check_optimizer_name(name)
    except ValueError as exc:
        raise ConfigError(f"key 'optimizer': {exc}") from None


def optim_args_string(optim_args: dict[str, Any] | str | None) -> str | None:
    """transformers takes optim_args as 'k=v,k=v'; axolotl allows a mapping too."""
    if optim_args is None or isinstance(optim_args, str):
        return optim_args
    return ",".join(f"{key}={value}" for key, value in optim_args.items())


def scheduler_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """lr_scheduler_type, its kwargs and warmup for TrainingArguments."""
    kwargs = dict(cfg.lr_scheduler_kwargs or {})
    # A quadratic warmup decays the cosine to 0, as in axolotl (trainer/loop/schedule_shape.py squares the warmup).
    name = effective_scheduler(cfg.lr_scheduler, cfg.cosine_min_lr_ratio, bool(cfg.lr_quadratic_warmup))
    if name == "cosine_with_min_lr":
        # transformers' cosine_with_min_lr decays to min_lr_rate * learning_rate instead of 0 (axolotl's floor).
        kwargs["min_lr_rate"] = cfg.cosine_min_lr_ratio
    has_warmup = bool(cfg.warmup_steps or cfg.warmup_ratio)
    if name == "constant" and has_warmup:
        name = "constant_with_warmup"  # transformers' plain constant would silently ignore the warmup
    warmup: float = 0
    if cfg.warmup_steps:
        warmup = int(cfg.warmup_steps)
    elif cfg.warmup_ratio:
        warmup = min(float(cfg.warmup_ratio), 0.999)  # transformers reads a float in [0, 1) as a ratio
    return {"lr_scheduler_type": name, "lr_scheduler_kwargs": kwargs, "warmup_steps": warmup}


def optimizer_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """optim, optim_args, learning rate, Adam hyper-parameters, weight decay and clipping for TrainingArguments."""
    args: dict[str, Any] = {
        # Muon is built by hpcft (trainer/loop/muon.py); TrainingArguments still needs a transformers name.
        "optim": "adamw_torch" if cfg.optimizer == "muon" else optimizer_name(cfg.optimizer),
        "learning_rate": cfg.learning_rate,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
    }
    if cfg.optim_args is not None:
        args["optim_args"] = optim_args_string(cfg.optim_args)
    for key in ("adam_beta1", "adam_beta2", "adam_epsilon"):
        if getattr(cfg, key) is not None:
            args[key] = getattr(cfg, key)
    return args
