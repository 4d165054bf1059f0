"""Optimizer/scheduler mapping, save/eval intervals, precision and DeepSpeed config resolution."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainingArguments, get_scheduler

from hpcft.core.errors import ConfigError
from hpcft.trainer.loop.args import (
    eval_arguments,
    per_epoch_to_steps,
    resolve_precision,
    save_arguments,
    steps_per_epoch,
)
from hpcft.trainer.loop.optim import optim_args_string, optimizer_arguments, optimizer_name, scheduler_arguments


def _lrs(cfg, total_steps: int) -> list[float]:
    """The learning rate of every step under the scheduler the config maps to (transformers builds it)."""
    sched = scheduler_arguments(cfg)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.learning_rate)
    warmup = sched["warmup_steps"]
    warmup_steps = int(warmup) if warmup >= 1 else int(warmup * total_steps + 0.999999)
    scheduler = get_scheduler(
        sched["lr_scheduler_type"],
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=sched["lr_scheduler_kwargs"],
    )
    lrs = []
    for _ in range(total_steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_cosine_min_lr_ratio_floors_the_schedule(train_config):
    cfg = train_config(lr_scheduler="cosine", cosine_min_lr_ratio=0.1, learning_rate=1e-3, warmup_steps=5)
    assert scheduler_arguments(cfg)["lr_scheduler_type"] == "cosine_with_min_lr"
    lrs = _lrs(cfg, 100)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1e-3)  # linear warmup to the peak
    assert min(lrs[5:]) == pytest.approx(1e-4)  # the floor is ratio * lr ...
    assert lrs[-1] == pytest.approx(1e-4)  # ... reached at the end, never below
    assert all(a >= b - 1e-12 for a, b in zip(lrs[5:-1], lrs[6:], strict=True))  # decays monotonically after warmup


def test_plain_cosine_decays_to_zero_and_warmup_ratio(train_config):
    cfg = train_config(lr_scheduler="cosine", learning_rate=2e-4, warmup_ratio=0.1)
    args = scheduler_arguments(cfg)
    assert args["lr_scheduler_type"] == "cosine" and args["warmup_steps"] == pytest.approx(0.1)
    lrs = _lrs(cfg, 50)
    assert lrs[5] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_constant_with_warmup_and_linear(train_config):
    assert scheduler_arguments(train_config(lr_scheduler="constant"))["lr_scheduler_type"] == "constant"
    cfg = train_config(lr_scheduler="constant", warmup_steps=4, learning_rate=1e-3)
    assert scheduler_arguments(cfg)["lr_scheduler_type"] == "constant_with_warmup"
    assert _lrs(cfg, 10)[4:] == pytest.approx([1e-3] * 7)
    assert _lrs(train_config(lr_scheduler="linear", learning_rate=1e-3), 10)[-1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="cosine_min_lr_ratio only applies to lr_scheduler: cosine"):
        train_config(lr_scheduler="linear", cosine_min_lr_ratio=0.1)


def test_optimizer_names_and_arguments(train_config):
    for name in (
        "adamw_torch",
        "adamw_torch_fused",
        "adamw_8bit",
        "adamw_bnb_8bit",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adafactor",
        "sgd",
    ):
        assert optimizer_name(name) == name
    with pytest.raises(ConfigError, match="unknown optimizer 'adamw_tourch'; did you mean 'adamw_torch'"):
        optimizer_name("adamw_tourch")
    with pytest.raises(ConfigError, match="'optimizer: optimi_adamw' is an axolotl option hpcft does not support"):
        optimizer_name("optimi_adamw")
    assert optim_args_string({"amsgrad": True, "foo": 2}) == "amsgrad=True,foo=2"
    cfg = train_config(
        optimizer="adamw_torch_fused",
        learning_rate=3e-4,
        weight_decay=0.01,
        max_grad_norm=0.5,
        adam_beta2=0.95,
        optim_args={"amsgrad": True},
    )
    assert optimizer_arguments(cfg) == {
        "optim": "adamw_torch_fused",
        "learning_rate": 3e-4,
        "weight_decay": 0.01,
        "max_grad_norm": 0.5,
        "optim_args": "amsgrad=True",
        "adam_beta2": 0.95,
    }


@pytest.mark.parametrize(
    ("name", "module", "cls"),
    [
        ("adamw_8bit", "bitsandbytes", "AdamW"),
        ("paged_adamw_32bit", "bitsandbytes", "AdamW"),
        ("adamw_torch", "torch", "AdamW"),
    ],
)
def test_transformers_builds_the_mapped_optimizer(train_config, tmp_path, name, module, cls):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        **optimizer_arguments(train_config(optimizer=name, adam_beta2=0.95)),
    )
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert optimizer_cls.__module__.startswith(module) and optimizer_cls.__name__ == cls
    assert kwargs["betas"] == (0.9, 0.95)
    if name == "paged_adamw_32bit":
        assert kwargs["is_paged"] and kwargs["optim_bits"] == 32


def test_steps_per_epoch_counts_like_the_trainer():
    # 72 rows, 2 per micro batch, 2 ranks -> 18 batches per rank; gradient accumulation 4 -> 5 steps (last partial)
    assert steps_per_epoch(72, 2, 1, 2) == 18
    assert steps_per_epoch(72, 2, 4, 2) == 5
    assert steps_per_epoch(3, 4, 8, 8) == 1


def test_saves_per_epoch_becomes_save_steps(train_config):
    assert per_epoch_to_steps(4, 18) == 4
    assert per_epoch_to_steps(4, 2) == 1  # never 0
    assert save_arguments(train_config(saves_per_epoch=4), 18) == {"save_strategy": "steps", "save_steps": 4}
    assert save_arguments(train_config(save_steps=7), 18) == {"save_strategy": "steps", "save_steps": 7}
    assert save_arguments(train_config(), 18) == {"save_strategy": "epoch"}
    assert save_arguments(train_config(save_strategy="no", save_steps=3), 18) == {"save_strategy": "no"}
    assert eval_arguments(train_config(evals_per_epoch=3), True, 18) == {"eval_strategy": "steps", "eval_steps": 6}
    assert eval_arguments(train_config(evals_per_epoch=3), False, 18) == {"eval_strategy": "no"}
    assert eval_arguments(train_config(eval_steps=5), True, 18) == {"eval_strategy": "steps", "eval_steps": 5}


def test_precision(train_config):
    assert resolve_precision(train_config(), bf16_supported=False).dtype == torch.float32  # auto on CPU: fp32
    assert resolve_precision(train_config(), bf16_supported=True).bf16
    assert resolve_precision(train_config(bf16=True), bf16_supported=False).dtype == torch.bfloat16
    full = resolve_precision(train_config(bf16="full"), bf16_supported=True)
    assert full.bf16 and full.full_bf16
    fp16 = resolve_precision(train_config(fp16=True, bf16=False), bf16_supported=True)
    assert fp16.fp16 and not fp16.bf16 and fp16.dtype == torch.float32  # fp32 master weights
    lora_fp16 = resolve_precision(train_config(fp16=True, adapter="lora", lora_target_linear=True), True)
    assert lora_fp16.fp16 and lora_fp16.dtype == torch.float16  # the frozen base in half precision
