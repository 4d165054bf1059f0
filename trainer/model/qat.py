"""Quantization-aware training (axolotl's `qat:`) with torchao's fake-quantised layers.

prepare_qat swaps the model's linear layers (and with quantize_embedding its input embeddings) for torchao's
fake-quantised ones before training; QatSwitchCallback keeps fake quantisation off for the first
fake_quant_after_n_steps steps; convert_qat swaps them back before the final save, so output_dir holds an ordinary
full-precision model trained to survive quantisation to the chosen format.

NVFP4: torchao's NVFP4 layer multiplies in FP4, which only Blackwell GPUs (compute capability 10+) can do. Elsewhere
(Hopper, CPU) hpcft's Nvfp4EmulatedLinear rounds activations and weights to NVFP4 with torchao's own NVFP4 quantiser
and multiplies the rounded values in the training precision: the same fake quantisation, with higher-precision
accumulation; the log says so.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from hpcft.core.features.qat import QatConfig

log = logging.getLogger("hpcft.trainer")

BLACKWELL = (10, 0)  # first compute capability with FP4 matrix multiplies


def _fake_quantize_configs(qat: QatConfig, activations: bool) -> tuple[Any, Any]:
    """torchao's (activation, weight) fake-quantise configs for int4/int8/float8 (the settings axolotl uses)."""
    from torchao.quantization.qat.fake_quantize_config import (
        Float8FakeQuantizeConfig,
        Int4WeightFakeQuantizeConfig,
        IntxFakeQuantizeConfig,
    )

    act = qat.activation_dtype if activations else None
    if qat.weight_dtype == "int4":
        kwargs: dict[str, Any] = {"group_size": qat.effective_group_size}
        if act == "int8":
            kwargs["activation_dtype"] = torch.bfloat16
        elif act == "float8_e4m3fn":
            kwargs["activation_dtype"] = torch.float8_e4m3fn
        weight: Any = Int4WeightFakeQuantizeConfig(**kwargs)
    elif qat.weight_dtype == "float8_e4m3fn":
        weight = Float8FakeQuantizeConfig(dtype=torch.float8_e4m3fn)
    else:  # int8 weights: only for embeddings (linear layers need an activation format, see core/features/qat.py)
        weight = IntxFakeQuantizeConfig(dtype=torch.int8, group_size=qat.effective_group_size, is_symmetric=True)
    activation = None
    if act == "int8":
        activation = IntxFakeQuantizeConfig(dtype=torch.int8, granularity="per_token", is_symmetric=False)
    elif act == "float8_e4m3fn":
        activation = Float8FakeQuantizeConfig(dtype=torch.float8_e4m3fn)
    return activation, weight


def torchao_qat_config(qat: QatConfig, cuda_capability: tuple[int, int] | None, embeddings: bool = False) -> Any:
    """The torchao QATConfig that prepares the linear layers (embeddings=True: the embedding layers), or None for
    NVFP4 without a Blackwell GPU (see Nvfp4EmulatedLinear)."""
    from torchao.quantization.qat import QATConfig

    if qat.weight_dtype == "mxfp4" and not embeddings:
        from torchao.prototype.qat import MXFakeQuantizeConfig

        mx = MXFakeQuantizeConfig(dtype=torch.float4_e2m1fn_x2, block_size=qat.effective_group_size)
        return QATConfig(activation_config=mx, weight_config=mx)
    if qat.weight_dtype == "nvfp4" and not embeddings:
        if cuda_capability is None or cuda_capability < BLACKWELL:
            return None
        from torchao.prototype.qat import NVFP4FakeQuantizeConfig

        nv = NVFP4FakeQuantizeConfig(use_per_tensor_scale=True)
        return QATConfig(activation_config=nv, weight_config=nv)
    if embeddings and qat.weight_dtype in ("mxfp4", "nvfp4"):
        raise ValueError(f"qat.quantize_embedding: torchao has no {qat.weight_dtype} fake quantisation for embeddings")
    activation, weight = _fake_quantize_configs(qat, activations=not embeddings)
    return QATConfig(activation_config=activation, weight_config=weight)


def _nvfp4_round(x: torch.Tensor) -> torch.Tensor:
    """x rounded to NVFP4 (blocks of 16 along the last dimension, FP8 block scales, an FP32 tensor scale)."""
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    flat = x.reshape(-1, x.shape[-1])
    scale = per_tensor_amax_to_scale(flat.detach().abs().max().float())
    return NVFP4Tensor.to_nvfp4(flat.detach(), per_tensor_scale=scale).dequantize(x.dtype).reshape(x.shape)


class _Nvfp4FakeQuantizedMatmul(torch.autograd.Function):
    """Forward with NVFP4-rounded inputs and weights; backward with the rounded values (straight through the
    rounding), as torchao's NVFP4 layer does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        xq, wq = _nvfp4_round(x), _nvfp4_round(weight)
        ctx.save_for_backward(xq, wq)
        ctx.has_bias = bias is not None
        return nn.functional.linear(xq, wq, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        xq, wq = ctx.saved_tensors
        flat_grad, flat_x = grad.reshape(-1, grad.shape[-1]), xq.reshape(-1, xq.shape[-1])
        grad_bias = flat_grad.sum(0) if ctx.has_bias else None
        return grad @ wq, flat_grad.t() @ flat_x, grad_bias


class Nvfp4EmulatedLinear(nn.Linear):
    """nn.Linear with NVFP4 fake quantisation of activations and weights, for machines without FP4 matmuls."""

    enabled: bool = True

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Nvfp4EmulatedLinear:
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias  # the same parameters: the optimizer and ties see no change
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return super().forward(x)
        return _Nvfp4FakeQuantizedMatmul.apply(x, self.weight, self.bias)

    def to_linear(self) -> nn.Linear:
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        plain.weight, plain.bias = self.weight, self.bias
        return plain


def _swap_linears(model: nn.Module, make: Any, wanted: type[nn.Module]) -> int:
    count = 0
    for name, child in list(model.named_children()):
        if type(child) is wanted:
            setattr(model, name, make(child))
            count += 1
        else:
            count += _swap_linears(child, make, wanted)
    return count


def cuda_capability() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def prepare_qat(qat: QatConfig, model: nn.Module, capability: tuple[int, int] | None) -> None:
    """Swap the model's linear layers (and embeddings, if asked) for fake-quantised ones, in place."""
    from torchao.quantization import quantize_

    config = torchao_qat_config(qat, capability)
    if config is None:
        count = _swap_linears(model, Nvfp4EmulatedLinear.from_linear, nn.Linear)
        log.warning(
            "qat: NVFP4 matrix multiplies need a Blackwell GPU (%s); emulating them: activations and weights are "
            "rounded to NVFP4 and multiplied in %s (same rounding, higher-precision accumulation)",
            "there is no CUDA GPU" if capability is None else f"this GPU is sm_{capability[0]}{capability[1]}",
            next(model.parameters()).dtype,
        )
    else:
        quantize_(model, config)
        count = sum(1 for m in model.modules() if _is_fake_quantized(m))
    if qat.quantize_embedding:
        quantize_(
            model, torchao_qat_config(qat, capability, embeddings=True), filter_fn=lambda m, _: type(m) is nn.Embedding
        )
    log.info("qat: %s, fake-quantised in %d linear layers%s", qat.scheme, count, quantize_embedding_note(qat))


def quantize_embedding_note(qat: QatConfig) -> str:
    return " and the embeddings" if qat.quantize_embedding else ""


def _is_fake_quantized(module: nn.Module) -> bool:
    from torchao.prototype.qat import MXFakeQuantizedLinear, NVFP4FakeQuantizedLinear
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    kinds = (FakeQuantizedLinear, FakeQuantizedEmbedding, MXFakeQuantizedLinear, NVFP4FakeQuantizedLinear)
    return isinstance(module, (*kinds, Nvfp4EmulatedLinear))


def set_fake_quantization(model: nn.Module, enabled: bool) -> None:
    """Turn fake quantisation on or off in every fake-quantised layer (the weights train either way)."""
    for module in model.modules():
        if isinstance(module, Nvfp4EmulatedLinear):
            module.enabled = enabled
        for quantizer in ("activation_fake_quantizer", "weight_fake_quantizer"):
            fq = getattr(module, quantizer, None)
            if fq is not None and hasattr(fq, "enabled"):
                fq.enabled = enabled


class QatSwitchCallback(TrainerCallback):
    """fake_quant_after_n_steps: fake quantisation off before that step, on from it (also after a resume)."""

    def __init__(self, after_steps: int) -> None:
        self.after_steps = after_steps
        self.enabled: bool | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        wanted = state.global_step >= self.after_steps
        if model is not None and wanted != self.enabled:
            set_fake_quantization(model, wanted)
            self.enabled = wanted
            log.info("qat: fake quantisation %s at step %d", "on" if wanted else "off", state.global_step)


def qat_callbacks(qat: QatConfig | None) -> list[TrainerCallback]:
    if qat is None or not qat.fake_quant_after_n_steps:
        return []
    return [QatSwitchCallback(qat.fake_quant_after_n_steps)]


def convert_qat(model: nn.Module) -> None:
    """Swap the fake-quantised layers back to plain ones (same weights) so the saved model loads anywhere."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    _swap_linears(model, Nvfp4EmulatedLinear.to_linear, Nvfp4EmulatedLinear)
    quantize_(model, QATConfig(step="convert"), filter_fn=lambda m, _: _is_fake_quantized(m))
    log.info(
        "qat: fake quantisation removed for the save; output_dir holds the full-precision weights, to be quantised "
        "with the same scheme for inference (e.g. torchao's quantize_ or transformers' TorchAoConfig)"
    )
