"""nvfp4_merge_aware (axolotl's meaning): LoRA trained so that merging it back into the NVFP4 checkpoint keeps it.

Merging a LoRA update into an NVFP4 model re-quantises W + scaling*B@A onto the NVFP4 grid of the base (its
per-tensor scale weight_scale_2), which erases most of an update smaller than a grid step. With nvfp4_merge_aware
every LoRA layer on a weight that was NVFP4 in the checkpoint computes with Q(W + scaling*B@A), that re-quantised
weight, from nvfp4_merge_aware_start_step on; the gradient reaches A and B straight through Q (straight-through
estimator), as in QAT. Linear layers (lora_target_modules) use Nvfp4MergeAwareLinear; expert parameters
(lora_target_parameters) use Nvfp4MergeAwareExperts, which snaps the expert weight peft's wrapper computes.
Q is torchao's NVFP4 rounding with the checkpoint's per-tensor scale (nvfp4_snap), pure PyTorch: the same on CPU
and GPU.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import ParamWrapper
from torch import nn
from torch.nn.utils import parametrize
from transformers import TrainerCallback

log = logging.getLogger("hpcft.trainer")

BLOCK = 16


def nvfp4_snap(weight: torch.Tensor, tensor_scale: torch.Tensor) -> torch.Tensor:
    """weight rounded to NVFP4 (blocks of 16 along the last dim, float8_e4m3fn block scales) over the given
    per-tensor scale: a scalar, or one per row (shape weight.shape[:-1] + (1,)). Same arithmetic as torchao's
    nvfp4_quantize followed by NVFP4Tensor.dequantize."""
    from torchao.prototype.mx_formats.constants import F4_E2M1_MAX, F8E4M3_MAX
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, f32_to_f4_unpacked

    x = weight.float().reshape(*weight.shape[:-1], -1, BLOCK)
    pts = tensor_scale.float().to(weight.device)
    pts = pts.reshape(1, 1) if pts.dim() == 0 else pts.unsqueeze(-1)
    block = x.abs().amax(dim=-1, keepdim=True) / F4_E2M1_MAX
    tiny = torch.finfo(torch.float8_e4m3fn).tiny
    block_fp8 = torch.clamp(block / pts, min=tiny, max=F8E4M3_MAX).to(torch.float8_e4m3fn).float()
    scaled = torch.clamp(x * ((1.0 / pts) / block_fp8), -F4_E2M1_MAX, F4_E2M1_MAX)
    values = f4_unpacked_to_f32(f32_to_f4_unpacked(scaled))
    return (values * (pts * block_fp8)).reshape(weight.shape).to(weight.dtype)


def snap_straight_through(weight: torch.Tensor, tensor_scale: torch.Tensor) -> torch.Tensor:
    """Q(weight) in the forward, the identity in the backward."""
    return weight + (nvfp4_snap(weight.detach(), tensor_scale) - weight.detach())


def _gathered(module: nn.Module) -> contextlib.AbstractContextManager:
    """The module's own weights, whole: under DeepSpeed ZeRO-3 they are partitioned and gathered only when the
    module itself runs, which the merge-aware forward bypasses (it multiplies with the merged weight instead)."""
    params = [p for p in module.parameters(recurse=False) if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


class Nvfp4MergeAwareLinear(LoraLinear):
    """peft's LoRA Linear whose forward, while `snapping` and the base weight was NVFP4 (`nvfp4_tensor_scale` set
    on the base layer), multiplies with Q(W + scaling*B@A)."""

    snapping = True

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        base = self.get_base_layer()
        tensor_scale = getattr(base, "nvfp4_tensor_scale", None)
        adapters = [a for a in self.active_adapters if a in self.lora_A]
        if (
            tensor_scale is None
            or not self.snapping
            or self.disable_adapters
            or self.merged
            or len(adapters) != 1
            or kwargs.get("adapter_names") is not None
        ):
            return super().forward(x, *args, **kwargs)
        adapter = adapters[0]
        lora_a, lora_b = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        scaling = self.scaling[adapter]
        with _gathered(base):
            merged = base.weight + (lora_b @ lora_a).to(base.weight.dtype) * scaling  # what merging writes
            bias = None if base.bias is None else base.bias.to(x.dtype).clone()
        weight = snap_straight_through(merged, torch.tensor(tensor_scale))
        result = F.linear(x, weight.to(x.dtype), bias)
        dropout = self.lora_dropout[adapter]
        if self.training and isinstance(dropout, nn.Dropout) and dropout.p > 0:
            # Dropout acts on the low-rank branch only: add scaling*(dropout(x) - x)@(B@A)^T, zero at evaluation.
            residual = (dropout(x) - x).to(lora_a.dtype)
            result = result + (scaling * F.linear(F.linear(residual, lora_a), lora_b)).to(result.dtype)
        return result


class _SnapParametrization(nn.Module):
    """The last link of an expert weight's parametrization chain: Q(W + LoRA) with a straight-through gradient."""

    def __init__(self, tensor_scale: torch.Tensor) -> None:
        super().__init__()
        self.tensor_scale = tensor_scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return snap_straight_through(weight, self.tensor_scale)


class Nvfp4MergeAwareExperts(ParamWrapper):
    """peft's ParamWrapper (LoRA on an expert parameter) that snaps the expert weight with its LoRA update onto the
    NVFP4 grid while `snapping`; the per-row scales come from `nvfp4_tensor_scales[parameter_name]` of the experts."""

    snapping = True

    @contextlib.contextmanager
    def _activate_lora(self, active_adapters: list[str]):
        with super()._activate_lora(active_adapters):
            base = self.get_base_layer()
            scales = getattr(base, "nvfp4_tensor_scales", {}).get(self.parameter_name)
            if scales is None or not self.snapping or not parametrize.is_parametrized(base, self.parameter_name):
                yield
                return
            parametrize.register_parametrization(base, self.parameter_name, _SnapParametrization(scales))
            parametrize._cache.clear()  # the weight read from here on is the snapped one
            try:
                yield
            finally:
                del base.parametrizations[self.parameter_name][-1]


# peft recognises its parameter wrappers (to nest a second one on the same module) by the class name.
Nvfp4MergeAwareExperts.__name__ = Nvfp4MergeAwareExperts.__qualname__ = "ParamWrapper"


def attach_tensor_scales(model: nn.Module, scales: dict[str, float]) -> int:
    """Put each NVFP4 layer's per-tensor scale on the module that holds it after loading: nvfp4_tensor_scale on
    linear layers, nvfp4_tensor_scales (one per row, by parameter) on fused experts. Returns how many were found."""
    found = 0
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, nn.Linear) and name in scales:
            module.nvfp4_tensor_scale = scales[name]
            found += 1
    for name, module in modules.items():
        if not name.endswith("experts") or isinstance(module, nn.Linear):
            continue
        per_param: dict[str, torch.Tensor] = {}
        for param_name, param in module.named_parameters(recurse=False):
            shape = tuple(getattr(param, "ds_shape", param.shape))  # ZeRO-3 partitions it: ds_shape is the whole
            parts = ("gate_proj", "up_proj") if param_name == "gate_up_proj" else (param_name,)
            if len(shape) != 3:
                continue
            rows = []
            for e in range(shape[0]):
                keys = [f"{name}.{e}.{p}" for p in parts]
                if not all(k in scales for k in keys):
                    break
                rows.append(torch.cat([torch.full((shape[1] // len(parts), 1), scales[k]) for k in keys]))
            if len(rows) == shape[0]:
                per_param[param_name] = torch.stack(rows)
        if per_param:
            module.nvfp4_tensor_scales = per_param
            found += len(per_param)
    return found


def register_merge_aware(config: LoraConfig, model: nn.Module) -> LoraConfig:
    """Have peft wrap linear layers and NVFP4 experts with the merge-aware LoRA layers."""
    mapping: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: Nvfp4MergeAwareLinear}
    for module in model.modules():
        if getattr(module, "nvfp4_tensor_scales", None):
            mapping[type(module)] = Nvfp4MergeAwareExperts
    config._register_custom_module(mapping)
    return config


def prepare_merge_aware(model: nn.Module, scales: dict[str, float], base_model: str) -> None:
    """Attach the checkpoint's NVFP4 scales to the loaded model; a base that was not NVFP4 cannot be merge-aware."""
    from hpcft.core.errors import ConfigError

    found = attach_tensor_scales(model, scales) if scales else 0
    if not found:
        raise ConfigError(
            f"nvfp4_merge_aware: base_model {base_model} is not an NVFP4 (ModelOpt) checkpoint, so there is no NVFP4 "
            f"grid to merge onto; remove nvfp4_merge_aware"
        )
    log.info("nvfp4_merge_aware: %d NVFP4 weights will be trained on their NVFP4 grid", found)


@torch.no_grad()
def snap_merged_model(model: nn.Module, scales: dict[str, float]) -> int:
    """After merge-lora: round every weight that was NVFP4 onto its NVFP4 grid, so the merged (16-bit) model computes
    what merge-aware training computed and re-quantises to NVFP4 without loss. Returns how many were snapped."""
    attach_tensor_scales(model, scales)
    snapped = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and getattr(module, "nvfp4_tensor_scale", None) is not None:
            module.weight.copy_(nvfp4_snap(module.weight, torch.tensor(module.nvfp4_tensor_scale)))
            snapped += 1
        for name, row_scales in (getattr(module, "nvfp4_tensor_scales", None) or {}).items():
            param = getattr(module, name)
            param.copy_(nvfp4_snap(param, row_scales))
            snapped += 1
    return snapped


def merge_aware_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (Nvfp4MergeAwareLinear, Nvfp4MergeAwareExperts))]


def set_snapping(model: nn.Module, enabled: bool) -> None:
    for layer in merge_aware_layers(model):
        layer.snapping = enabled


def start_step(setting: int | float | None, max_steps: int) -> int:
    """nvfp4_merge_aware_start_step as an optimizer step: an int is the step, a float in (0, 1) a share of all."""
    if setting is None:
        return 0
    return int(setting * max_steps) if isinstance(setting, float) else setting


class MergeAwareStartCallback(TrainerCallback):
    """Keeps the snapping off before nvfp4_merge_aware_start_step (a warm-up while the adapter is near zero)."""

    def __init__(self, setting: int | float | None) -> None:
        self.setting = setting
        self.logged = False

    def on_step_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        if model is None:
            return
        start = start_step(self.setting, state.max_steps)
        on = state.global_step >= start
        set_snapping(model, on)
        if on and not self.logged:
            log.info("nvfp4_merge_aware: LoRA layers compute with the NVFP4-snapped merged weight from step %d", start)
            self.logged = True
