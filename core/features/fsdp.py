"""axolotl's FSDP keys (`fsdp`, `fsdp_config`, `fsdp_version`) as transformers' FSDP settings, or, on nodes
without GPUs, as the equivalent DeepSpeed ZeRO stage.

Why the second form: accelerate (which the transformers Trainer uses) runs FSDP only on accelerators; on CPU
it silently falls back to plain DDP, so every rank would hold the whole model. ZeRO-3 shards parameters,
gradients and optimizer state across ranks as FSDP's FULL_SHARD does, and ZeRO-2 keeps whole parameters
like SHARD_GRAD_OP, so a CPU run trains the same model with the same memory split.
"""

from __future__ import annotations

from typing import Any

from hpcft.core.features.parallelism import runs_autotp
from hpcft.core.schema import FsdpConfig, TrainConfig

DEFAULT_FSDP_VERSION = 1  # axolotl's default when a config names no version


def fsdp_version(cfg: TrainConfig) -> int:
    return cfg.fsdp_version or DEFAULT_FSDP_VERSION


def sharding_strategy(cfg: TrainConfig) -> str:
    """FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD, _HYBRID_SHARD_ZERO2 or NO_SHARD, from whichever key sets it."""
    fc = cfg.fsdp_config or FsdpConfig()
    if fc.sharding_strategy:
        return fc.sharding_strategy
    if isinstance(fc.reshard_after_forward, bool):
        return "FULL_SHARD" if fc.reshard_after_forward else "SHARD_GRAD_OP"
    if isinstance(fc.reshard_after_forward, str):
        return fc.reshard_after_forward.upper()
    for option in cfg.fsdp or []:
        if option not in ("offload", "auto_wrap"):
            return "_HYBRID_SHARD_ZERO2" if option == "hybrid_shard_zero2" else option.upper()
    return "FULL_SHARD"


def offloads_params(cfg: TrainConfig) -> bool:
    fc = cfg.fsdp_config or FsdpConfig()
    return bool(fc.offload_params) or "offload" in (cfg.fsdp or [])


def fsdp_activation_checkpointing(cfg: TrainConfig) -> bool:
    """Activation checkpointing asked for through fsdp_config (axolotl's FSDP spelling of gradient_checkpointing)."""
    return bool(cfg.fsdp_config and cfg.fsdp_config.activation_checkpointing)


def transformers_fsdp_config(cfg: TrainConfig) -> dict[str, Any]:
    """The `fsdp_config` mapping of transformers' TrainingArguments (with `fsdp=True`) for a GPU run."""
    fc = cfg.fsdp_config or FsdpConfig()
    version = fsdp_version(cfg)
    strategy = sharding_strategy(cfg)
    out: dict[str, Any] = {"version": version, "state_dict_type": fc.state_dict_type or "FULL_STATE_DICT"}
    if offloads_params(cfg):
        out["cpu_offload"] = True
    if fc.auto_wrap_policy or "auto_wrap" in (cfg.fsdp or []):
        out["auto_wrap_policy"] = fc.auto_wrap_policy or "TRANSFORMER_BASED_WRAP"
    if fc.transformer_layer_cls_to_wrap:
        layers = fc.transformer_layer_cls_to_wrap
        out["transformer_layer_cls_to_wrap"] = [layers] if isinstance(layers, str) else list(layers)
    if fc.min_num_params:
        out["min_num_params"] = fc.min_num_params
    for key in ("activation_checkpointing", "cpu_ram_efficient_loading"):
        if getattr(fc, key) is not None:
            out[key] = getattr(fc, key)
    if version == 2:
        if strategy not in ("FULL_SHARD", "SHARD_GRAD_OP"):
            raise ValueError(
                f"fsdp_version: 2 shards FULL_SHARD or SHARD_GRAD_OP, not {strategy}; "
                "use fsdp_version: 1 or another sharding strategy"
            )
        out["reshard_after_forward"] = strategy == "FULL_SHARD"
    else:
        out["reshard_after_forward"] = strategy.lower()
        for key in ("use_orig_params", "sync_module_states", "limit_all_gathers", "forward_prefetch"):
            if getattr(fc, key) is not None:
                out[key] = getattr(fc, key)
        if fc.backward_prefetch:
            out["backward_prefetch"] = fc.backward_prefetch
    return out


def zero_preset_for_fsdp(cfg: TrainConfig) -> str:
    """The DeepSpeed preset that shards like the FSDP config on a CPU node.

    Parameter offload is dropped: on a CPU node the parameters already live in CPU memory.
    """
    strategy = sharding_strategy(cfg)
    if runs_autotp(cfg):
        return "zero2"
    if strategy == "NO_SHARD":
        return "zero1"  # DDP with only the optimizer state split: the same updates, no sharded weights
    return "zero2" if strategy in ("SHARD_GRAD_OP", "_HYBRID_SHARD_ZERO2") else "zero3"


def cpu_translation_note(cfg: TrainConfig) -> str:
    """One line for the rendered files and the log: what runs instead of FSDP, and why."""
    preset = zero_preset_for_fsdp(cfg)
    stage = f"ZeRO-{preset[-1]}"
    offload = " (offload_params is moot: parameters are in CPU memory already)" if offloads_params(cfg) else ""
    return (
        f"fsdp: accelerate runs FSDP only on GPUs; on CPU nodes this {sharding_strategy(cfg)} config runs as "
        f"the equivalent DeepSpeed {stage} (preset {preset}){offload}"
    )
