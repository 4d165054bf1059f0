"""FP8 mixed precision (axolotl's `fp8`): the model's linear layers become torchao's Float8Linear, which casts
inputs, weights and gradients to float8 (dynamic per-tensor scales) for its matrix multiplies and keeps the
weights themselves in bf16/fp32. torch runs float8 matmuls on CUDA GPUs of compute capability 8.9+ and on CPUs
(no speed-up there, the same numerics); on older GPUs the run warns and trains without fp8.

Converted here, before the Trainer wraps the model, rather than through accelerate's fp8 switch: the Trainer has
no setting for it, and the layers are the same ones accelerate's torchao path would build.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers import TrainerCallback

from hpcft.core.features.fp8 import FP8_MIN_CAPABILITY
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

# MoE routers pick experts from their logits: kept in high precision, as torchao's own recipes do.
_ROUTER_NAMES = ("gate", "router")


def float8_config(cfg: TrainConfig, fsdp: bool) -> Any:
    """torchao's Float8LinearConfig (tensorwise scaling, its default), with float8 all-gather when FSDP2 runs
    (on CPU nodes FSDP runs as DeepSpeed ZeRO, which gathers the weights in their own dtype)."""
    from torchao.float8 import Float8LinearConfig

    return Float8LinearConfig(enable_fsdp_float8_all_gather=bool(cfg.fp8_enable_fsdp_float8_all_gather and fsdp))


def converts_to_float8(module: nn.Module, name: str, output: nn.Module | None) -> bool:
    """Linear layers float8 can multiply (both sizes multiples of 16), except the output head and MoE routers."""
    if not isinstance(module, nn.Linear) or module is output:
        return False
    if name.rsplit(".", 1)[-1] in _ROUTER_NAMES:
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0


def fp8_unavailable(cuda_capability: tuple[int, int] | None) -> str | None:
    """Why this node cannot train in fp8 (None: it can)."""
    if cuda_capability is not None and cuda_capability < FP8_MIN_CAPABILITY:
        major, minor = cuda_capability
        return f"this GPU is sm_{major}{minor}; float8 matrix multiplies need sm_89 or newer (H100, GH200)"
    return None


def apply_fp8(cfg: TrainConfig, model: nn.Module, cuda_capability: tuple[int, int] | None, fsdp: bool = False) -> int:
    """Convert the model's linear layers to Float8Linear in place; returns how many (0: fp8 off or unavailable).
    fsdp: the model will be sharded with PyTorch FSDP2 (not DeepSpeed)."""
    if not cfg.fp8:
        return 0
    reason = fp8_unavailable(cuda_capability)
    if reason:
        log.warning("fp8: %s; training without fp8 in the configured precision", reason)
        return 0
    from torchao.float8 import convert_to_float8_training
    from torchao.float8.float8_linear import Float8Linear

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    convert_to_float8_training(
        model, config=float8_config(cfg, fsdp), module_filter_fn=lambda m, name: converts_to_float8(m, name, output)
    )
    count = sum(isinstance(m, Float8Linear) for m in model.modules())
    where = "CPU: float8 numerics, no speed-up" if cuda_capability is None else "GPU"
    log.info("fp8: %d linear layers train with torchao float8 matmuls (%s)", count, where)
    return count


class Float8AllGatherScales(TrainerCallback):
    """FSDP2 float8 all-gather: after each optimizer step, compute the next step's float8 scales of the sharded
    weights in one go (torchao's precompute_float8_dynamic_scale_for_fsdp) instead of one all-reduce per layer."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

        if model is not None:
            precompute_float8_dynamic_scale_for_fsdp(model)


def fp8_callbacks(cfg: TrainConfig, fsdp: bool) -> list[TrainerCallback]:
    """Callbacks an fp8 run needs: the scale precomputation when float8 all-gather runs under FSDP2."""
    if cfg.fp8 and cfg.fp8_enable_fsdp_float8_all_gather and fsdp:
        return [Float8AllGatherScales()]
    return []
