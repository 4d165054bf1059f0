"""The optimizer names `optimizer:` accepts, listed here so the login node checks them without importing torch.

TRANSFORMERS_OPTIMIZERS mirrors transformers' `OptimizerNames` (tests/trainer/test_optimizer_names.py fails when
the pinned transformers version adds or drops one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

TRANSFORMERS_OPTIMIZERS: tuple[str, ...] = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_xla",
    "adamw_torch_npu_fused",
    "adafactor",
    "adamw_anyprecision",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "ademamix",
    "sgd",
    "adagrad",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "stable_adamw",
)
# Optimizers hpcft builds itself (trainer/loop/muon.py), outside transformers' names.
HPCFT_OPTIMIZERS: tuple[str, ...] = ("muon",)
# What error messages suggest first.
COMMON_OPTIMIZERS: tuple[str, ...] = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
    "lion_8bit",
)


def check_cosine_constant(cfg: TrainConfig) -> None:
    """cosine_constant_lr_ratio needs the cosine, the floor it holds, and a warmup that ends before it; ValueError
    naming the key otherwise. 0 is axolotl's "off" (its own examples set 0), so it is accepted as such."""
    ratio = cfg.cosine_constant_lr_ratio
    if not ratio:
        return
    if cfg.lr_scheduler != "cosine":
        raise ValueError(
            f"cosine_constant_lr_ratio shapes lr_scheduler: cosine only (got lr_scheduler: {cfg.lr_scheduler}); "
            "set lr_scheduler: cosine or remove it"
        )
    if cfg.cosine_min_lr_ratio is None:
        raise ValueError(
            f"cosine_constant_lr_ratio: {ratio} holds the rate at cosine_min_lr_ratio x learning_rate from "
            f"{ratio:.0%} of training on; set cosine_min_lr_ratio (e.g. 0.1) or remove cosine_constant_lr_ratio"
        )
    if cfg.warmup_ratio and cfg.warmup_ratio >= ratio:
        raise ValueError(
            f"cosine_constant_lr_ratio: {ratio} ends the cosine before warmup_ratio: {cfg.warmup_ratio} ends the "
            "warmup; make cosine_constant_lr_ratio larger than warmup_ratio"
        )
    if cfg.warmup_steps and cfg.max_steps and cfg.warmup_steps >= int(cfg.max_steps * ratio):
        raise ValueError(
            f"cosine_constant_lr_ratio: {ratio} of max_steps: {cfg.max_steps} ends the cosine at step "
            f"{int(cfg.max_steps * ratio)}, before warmup_steps: {cfg.warmup_steps} end; make it larger"
        )


def check_muon(cfg: TrainConfig) -> None:
    """What `optimizer: muon` cannot run with; ValueError naming the key. Muon orthogonalises each weight
    matrix's update as a whole: DeepSpeed's ZeRO optimizer hands its optimizer flattened, sharded slices instead."""
    if cfg.optimizer != "muon":
        return
    if cfg.deepspeed is not None:
        raise ValueError(
            "optimizer: muon updates whole weight matrices, which DeepSpeed's ZeRO optimizer flattens and shards; "
            "hpcft runs Muon with plain DDP: remove deepspeed"
        )
    if cfg.rl or cfg.reward_model or cfg.process_reward_model:
        raise ValueError(
            "optimizer: muon is supported for fine-tuning and pretraining with the causal-LM loss only; use "
            "another optimizer with rl/reward_model"
        )
    if cfg.loraplus_lr_ratio is not None:
        raise ValueError("optimizer: muon builds its own parameter groups; remove loraplus_lr_ratio")
    if cfg.optim_args is not None:
        raise ValueError(
            "optim_args do not apply to optimizer: muon (torch's Muon runs with its defaults: momentum 0.95, "
            "Nesterov, 5 Newton-Schulz steps); remove optim_args"
        )


def muon_without_fsdp(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """optimizer: muon with FSDP (axolotl's Muon example shards with FSDP2): the job runs plain DDP instead, since
    Muon needs whole weight matrices; the config loses its FSDP keys (FSDP's activation checkpointing becomes
    gradient_checkpointing) and the returned note says so. Other configs come back unchanged, with no note."""
    if cfg.optimizer != "muon" or not cfg.uses_fsdp:
        return cfg, None
    update: dict[str, object] = {"fsdp": None, "fsdp_config": None, "fsdp_version": None}
    if cfg.fsdp_config and cfg.fsdp_config.activation_checkpointing and not cfg.gradient_checkpointing:
        update["gradient_checkpointing"] = True
    note = (
        "optimizer: muon updates whole weight matrices, which FSDP shards (and hpcft's CPU translation of FSDP, "
        "ZeRO, flattens); this job runs Muon with plain DDP instead: every rank holds the whole model and its "
        "optimizer state (fsdp/fsdp_config are not used)"
    )
    return cfg.model_copy(update=update), note
