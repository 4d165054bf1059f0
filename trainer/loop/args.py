"""Translate a TrainConfig into transformers' TrainingArguments: precision, batch, schedule, saves, evals."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainingArguments

from hpcft.core.features.best_checkpoint import align_for_best_model
from hpcft.core.features.fsdp import fsdp_activation_checkpointing
from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.streaming import streaming_arguments
from hpcft.trainer.loop.optim import optimizer_arguments, scheduler_arguments
from hpcft.trainer.loop.stopping import stopping_arguments
from hpcft.trainer.model.liger import liger_arguments
from hpcft.trainer.reporting.metrics import tracker_arguments

log = logging.getLogger("hpcft.trainer")


@dataclass(frozen=True)
class Precision:
    """Mixed-precision mode and the dtype the model's weights are loaded in."""

    bf16: bool = False
    fp16: bool = False
    full_bf16: bool = False  # bf16: full -> evaluation in bf16 too
    dtype: torch.dtype = torch.float32  # of the loaded weights


def resolve_precision(
    cfg: TrainConfig, bf16_supported: bool | None = None, deepspeed: bool = False, cuda: bool | None = None
) -> Precision:
    """bf16 'auto' means bf16 where the GPU supports it; on CPU training stays fp32 unless bf16 is set true.
    `deepspeed`: the run trains under DeepSpeed, which decides what float16 can mean (float16_precision)."""
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.float16:
        return float16_precision(deepspeed, torch.cuda.is_available() if cuda is None else cuda)
    if cfg.bfloat16:
        return Precision(bf16=True, dtype=torch.bfloat16)  # as bf16: true, which already loads bf16 weights
    if cfg.fp16:
        # A full fine-tune keeps fp32 master weights (AMP; DeepSpeed casts itself); a frozen base can be fp16.
        return Precision(fp16=True, dtype=torch.float16 if cfg.adapter else torch.float32)
    bf16 = bf16_supported if cfg.bf16 == "auto" else bool(cfg.bf16)
    return Precision(bf16=bf16, full_bf16=cfg.bf16 == "full", dtype=torch.bfloat16 if bf16 else torch.float32)


def float16_precision(deepspeed: bool, cuda: bool) -> Precision:
    """axolotl's float16: the weights themselves in fp16 and no mixed precision. DeepSpeed has no such mode: on
    GPUs its fp16 mode (fp16 weights, an fp32 master copy in the optimizer, loss scaling) is the nearest; on CPU
    it has no fp16 at all."""
    if not deepspeed:
        return Precision(dtype=torch.float16)
    if cuda:
        log.info("float16: DeepSpeed has no pure-fp16 mode; training in its fp16 mode (fp32 master weights)")
        return Precision(fp16=True, dtype=torch.float16)
    log.warning("float16: DeepSpeed has no fp16 on CPU; training in fp32")
    return Precision()


def checkpointing_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """gradient_checkpointing_kwargs, defaulting to non-reentrant checkpointing (torch's recommendation; it needs
    no input grads with frozen embeddings and works under ZeRO-3)."""
    return dict(cfg.gradient_checkpointing_kwargs or {"use_reentrant": False})


def steps_per_epoch(num_rows: int, micro_batch_size: int, gradient_accumulation_steps: int, world_size: int) -> int:
    """Optimizer steps in one epoch, counted as the Trainer counts them (last partial batch and step included)."""
    batches_per_rank = math.ceil(num_rows / (micro_batch_size * world_size))
    return max(1, math.ceil(batches_per_rank / gradient_accumulation_steps))


def per_epoch_to_steps(times_per_epoch: int, epoch_steps: int) -> int:
    """`saves_per_epoch` / `evals_per_epoch` as an interval in steps (at least 1)."""
    return max(1, epoch_steps // times_per_epoch)


def total_steps(cfg: TrainConfig, epoch_steps: int) -> int:
    """Optimizer steps in the whole run, as the Trainer counts them (max_steps wins over num_epochs)."""
    return cfg.max_steps or max(1, math.ceil(epoch_steps * cfg.num_epochs))


def interval_steps(value: int | float, cfg: TrainConfig, epoch_steps: int) -> int:
    """`eval_steps` / `save_steps` / `logging_steps` in steps: below 1 it is a fraction of the run, rounded up as
    transformers rounds it. Resolved here so that every consumer (alignment of saves to evaluations, callbacks)
    sees whole steps."""
    if value < 1:
        return max(1, math.ceil(total_steps(cfg, epoch_steps) * value))
    return int(value)


def save_arguments(cfg: TrainConfig, epoch_steps: int) -> dict[str, Any]:
    """Save strategy and interval from save_steps / saves_per_epoch / save_strategy (default: every epoch).
    save_total_limit is applied by hpcft's CompleteCheckpointCallback, not by the Trainer."""
    if cfg.save_strategy == "no" or cfg.saves_per_epoch == 0:
        return {"save_strategy": "no"}
    if cfg.save_steps:
        return {"save_strategy": "steps", "save_steps": interval_steps(cfg.save_steps, cfg, epoch_steps)}
    if cfg.saves_per_epoch:
        return {"save_strategy": "steps", "save_steps": per_epoch_to_steps(cfg.saves_per_epoch, epoch_steps)}
    return {"save_strategy": cfg.save_strategy or "epoch"}


def eval_arguments(cfg: TrainConfig, has_eval: bool, epoch_steps: int) -> dict[str, Any]:
    """Eval strategy and interval from eval_steps / evals_per_epoch / eval_strategy (default: every epoch when there
    is eval data); eval_strategy: steps without an interval evaluates every logging_steps (transformers' default)."""
    if not has_eval or cfg.evals_per_epoch == 0 or cfg.eval_strategy == "no":
        return {"eval_strategy": "no"}
    if cfg.eval_steps:
        return {"eval_strategy": "steps", "eval_steps": interval_steps(cfg.eval_steps, cfg, epoch_steps)}
    if cfg.evals_per_epoch:
        return {"eval_strategy": "steps", "eval_steps": per_epoch_to_steps(cfg.evals_per_epoch, epoch_steps)}
    return {"eval_strategy": cfg.eval_strategy or "epoch"}


def save_and_eval_arguments(cfg: TrainConfig, has_eval: bool, epoch_steps: int) -> dict[str, Any]:
    """Save and eval intervals; with load_best_model_at_end checkpoints move to evaluation steps (transformers needs
    a checkpoint at each evaluation it may pick as best)."""
    save, evaluation = save_arguments(cfg, epoch_steps), eval_arguments(cfg, has_eval, epoch_steps)
    if cfg.load_best_model_at_end:
        aligned = align_for_best_model(save, evaluation)
        if aligned != save:
            log.info("load_best_model_at_end: checkpoints at evaluations (%s instead of %s)", aligned, save)
        save = aligned
    return {**save, **evaluation}


def best_model_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """metric_for_best_model / greater_is_better / load_best_model_at_end as transformers takes them (early
    stopping's own metric, from stopping_arguments, applies when none is given)."""
    out: dict[str, Any] = {}
    if cfg.metric_for_best_model:
        out["metric_for_best_model"] = cfg.metric_for_best_model
    if cfg.greater_is_better is not None:
        out["greater_is_better"] = cfg.greater_is_better
    if cfg.load_best_model_at_end:
        out["load_best_model_at_end"] = True
        out.setdefault("metric_for_best_model", "eval_loss")
    return out


def sampling_strategy(cfg: TrainConfig) -> str:
    """The Trainer's train sampler: by length, in order (curriculum_sampling) or shuffled."""
    if cfg.group_by_length:
        return "group_by_length"
    return "sequential" if cfg.curriculum_sampling else "random"


def training_arguments(
    cfg: TrainConfig,
    precision: Precision,
    deepspeed_config: dict[str, Any] | None,
    num_train_rows: int,
    has_eval: bool,
    world_size: int,
    fsdp_config: dict[str, Any] | None = None,
) -> TrainingArguments:
    """The TrainingArguments of a run. Build them before loading the model: with ZeRO-3 they make
    from_pretrained load each weight straight into its partition. fsdp_config (from sharding_plan) turns on FSDP."""
    return TrainingArguments(
        **training_argument_values(cfg, precision, deepspeed_config, num_train_rows, has_eval, world_size, fsdp_config)
    )


def training_argument_values(
    cfg: TrainConfig,
    precision: Precision,
    deepspeed_config: dict[str, Any] | None,
    num_train_rows: int,
    has_eval: bool,
    world_size: int,
    fsdp_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of TrainingArguments (TRL's configs extend them: see
    trainer/objectives/preference_trainer.py)."""
    epoch_steps = steps_per_epoch(num_train_rows, cfg.micro_batch_size, cfg.gradient_accumulation_steps, world_size)
    tf32 = None
    if cfg.tf32:
        if torch.cuda.is_available():
            tf32 = True
        else:
            log.warning("tf32: true ignored: no CUDA GPU")
    # fsdp_config.activation_checkpointing is FSDP's own; when FSDP runs as ZeRO (CPU) the Trainer's does the same.
    checkpointing = bool(cfg.gradient_checkpointing) or (fsdp_config is None and fsdp_activation_checkpointing(cfg))
    return dict(
        output_dir=cfg.output_dir,
        # Without a GPU accelerate only starts torch.distributed (gloo) for DeepSpeed/DDP when told it is on CPU.
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        data_seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps or -1,
        bf16=precision.bf16,
        fp16=precision.fp16,
        bf16_full_eval=precision.full_bf16,
        tf32=tf32,
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs=checkpointing_kwargs(cfg) if checkpointing else None,
        train_sampling_strategy=sampling_strategy(cfg),
        deepspeed=deepspeed_config,
        fsdp=True if fsdp_config else None,
        fsdp_config=fsdp_config,
        ddp_timeout=cfg.ddp_timeout,
        # Causal LMs use every parameter; searching costs a graph walk per step. LISA's frozen layers are unused.
        ddp_find_unused_parameters=bool(cfg.lisa_n_layers),
        logging_steps=interval_steps(cfg.logging_steps, cfg, epoch_steps),
        include_num_input_tokens_seen="non_padding",  # for tokens_per_s, gathered over all ranks
        disable_tqdm=True,  # progress lines would interleave with the JSON metrics lines on stdout
        **optimizer_arguments(cfg),
        **scheduler_arguments(cfg),
        **save_and_eval_arguments(cfg, has_eval, epoch_steps),
        **tracker_arguments(cfg),
        **liger_arguments(cfg, cuda=torch.cuda.is_available()),
        **compile_arguments(cfg, cuda=torch.cuda.is_available()),
        **{**stopping_arguments(cfg), **best_model_arguments(cfg)},
        neftune_noise_alpha=cfg.neftune_noise_alpha,
        save_only_model=bool(cfg.save_only_model),
        # A stream's reading settings win over the config's accelerator_config (both set this one argument).
        accelerator_config={**(cfg.accelerator_config or {}), **streaming_arguments(cfg).get("accelerator_config", {})}
        or None,
    )


def compile_arguments(cfg: TrainConfig, cuda: bool) -> dict[str, Any]:
    """torch_compile (`auto`: only where compiling pays off, on CUDA GPUs), with its backend and mode."""
    wanted = cuda if cfg.torch_compile == "auto" else bool(cfg.torch_compile)
    if not wanted:
        return {}
    out: dict[str, Any] = {"torch_compile": True}
    if cfg.torch_compile_backend:
        out["torch_compile_backend"] = cfg.torch_compile_backend
    if cfg.torch_compile_mode:
        out["torch_compile_mode"] = cfg.torch_compile_mode
    return out
