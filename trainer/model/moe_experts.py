"""MoE experts: bitsandbytes quantisation of their fused 3-D weights (`quantize_moe_experts`) and LoRA on
parameters (`lora_target_parameters`).

transformers stores the experts of recent MoE models (Qwen3-MoE, Mixtral, OLMoE, GLM, Gemma 4, ...) as 3-D
nn.Parameters, not nn.Linear layers, so load_in_4bit/8bit leaves them, most of the model, in 16 bits. Here each
such parameter is quantised in place behind a torch parametrization: the module reads the dequantised weight as
before, only the 4-bit (or int8) data is kept. peft wraps parameters with its ParamWrapper; on a parameter that is
already parametrized, peft 0.21's wrapper leaves its LoRA proxy registered after each forward and, when two
parameters of one module are wrapped, reads the inner one from a stale cache. `QuantizedExpertsLora` is that
wrapper with both fixed, handed to peft through its custom-module hook (no library code is replaced). peft also
nests the wrappers of a parametrized module in another order than on the 16-bit model; `nest_in_definition_order`
restores peft's usual order, so that the saved adapter fits the 16-bit model.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, load_peft_weights, set_peft_model_state_dict
from peft.tuners.lora.layer import ParamWrapper
from torch.nn.utils import parametrize

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

# Names axolotl configs use for the separate expert projections, which transformers 5 fuses into one parameter.
FUSED_NAMES = {"gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "w1": "gate_up_proj", "w3": "gate_up_proj"}


def expert_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str]]:
    """(module path, module, parameter name) of every MoE expert weight: a parameter of 3 or more dimensions whose
    path names an expert (axolotl's rule; a 3-D parameter elsewhere, e.g. a convolution, is left alone)."""
    found = []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if param.ndim >= 3 and "expert" in f"{module_name}.{name}".lower():
                found.append((module_name, module, name))
    return found


class Int8Dequantize(torch.nn.Module):
    """Parametrization holding row-wise int8 weights: returns them dequantised (bitsandbytes' vector-wise scheme)."""

    def __init__(self, row_stats: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("row_stats", row_stats)
        self.dtype = dtype

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        import bitsandbytes as bnb

        rows = quantized.reshape(-1, quantized.shape[-1])
        return bnb.functional.int8_vectorwise_dequant(rows, self.row_stats).reshape(quantized.shape).to(self.dtype)


def _cache_during_forward(module: torch.nn.Module) -> None:
    # Experts index their weight once per expert: without the cache every index would dequantise the whole tensor.
    stack: list[contextlib.AbstractContextManager] = []

    def enter(_module: torch.nn.Module, _inputs: Any) -> None:
        stack.append(parametrize.cached())
        stack[-1].__enter__()

    def leave(_module: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        if stack:
            stack.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave, always_call=True)


def quantize_int8(module: torch.nn.Module, name: str) -> None:
    import bitsandbytes as bnb

    original = getattr(module, name)
    rows = original.data.reshape(-1, original.shape[-1]).to(torch.float16)
    data, row_stats, _ = bnb.functional.int8_vectorwise_quant(rows)
    setattr(module, name, torch.nn.Parameter(data.reshape(original.shape), requires_grad=False))
    parametrize.register_parametrization(module, name, Int8Dequantize(row_stats, original.dtype), unsafe=True)
    if not getattr(module, "_hpcft_int8_cache", False):
        _cache_during_forward(module)
        module._hpcft_int8_cache = True


def quantize_moe_experts(cfg: TrainConfig, model: torch.nn.Module) -> int:
    """Quantise every expert weight in place (4-bit with load_in_4bit, int8 with load_in_8bit), on the device it
    was loaded to; returns how many were quantised."""
    from bitsandbytes.nn.parametrize import replace_parameter_4bit

    settings = cfg.bnb_config_kwargs or {}
    found = expert_parameters(model)
    if not found:
        raise ConfigError(
            f"quantize_moe_experts: {cfg.base_model} has no fused MoE expert weights (3-D parameters under "
            "'experts'); remove quantize_moe_experts"
        )
    before = sum(getattr(m, n).numel() * getattr(m, n).element_size() for _, m, n in found)
    for _, module, name in found:
        if cfg.load_in_4bit:
            replace_parameter_4bit(
                module,
                name,
                compress_statistics=settings.get("bnb_4bit_use_double_quant", True),
                quant_type=settings.get("bnb_4bit_quant_type", "nf4"),
            )
        else:
            quantize_int8(module, name)
    modules = {id(m): m for _, m, _ in found}.values()
    after = sum(p.numel() * p.element_size() for m in modules for p in m.parametrizations.parameters())
    log.info(
        "quantize_moe_experts: %d expert weights quantised to %s (%.1f MiB -> %.1f MiB)",
        len(found),
        "4-bit" if cfg.load_in_4bit else "int8",
        before / 2**20,
        after / 2**20,
    )
    return len(found)


def _names_on(module: torch.nn.Module) -> list[str]:
    if parametrize.is_parametrized(module):
        return list(module.parametrizations.keys())
    return [name for name, _ in module.named_parameters(recurse=False)]


def lora_target_parameters(cfg: TrainConfig, model: torch.nn.Module) -> list[str]:
    """lora_target_parameters as full parameter paths. A listed name matches a path's end (as in peft), and a
    separate gate/up projection name matches the fused `gate_up_proj` of transformers 5. Full paths let peft find
    parametrized (quantised) experts, which it matches by exact path only."""
    listed = cfg.lora_target_parameters
    wanted = [listed] if isinstance(listed, str) else list(listed or [])
    found: set[str] = set()
    for module_name, module in model.named_modules():
        names = _names_on(module)
        for target in wanted:
            prefix, _, last = target.rpartition(".")
            for name in (last, FUSED_NAMES.get(last)):
                if name not in names:
                    continue
                path = f"{module_name}.{name}"
                if not prefix or module_name == prefix or module_name.endswith(f".{prefix}"):
                    found.add(path)
                    break
    if not found:
        examples = [f"{m}.{n}" for m, _, n in expert_parameters(model)][:2] or ["(no 3-D parameters)"]
        raise ConfigError(
            f"lora_target_parameters {wanted} match no parameter of {cfg.base_model}; expert weights are named "
            f"like {', '.join(examples)}"
        )
    return sorted(found)


class QuantizedExpertsLora(ParamWrapper):
    """peft's ParamWrapper for a parameter that is already parametrized (a quantised expert weight)."""

    @contextlib.contextmanager
    def _activate_lora(self, active_adapters: list[str]):
        with super()._activate_lora(active_adapters):
            # An enclosing wrapper's parametrize.cached() stored our weight before our LoRA proxy was registered;
            # drop that entry so the forward reads base + LoRA.
            parametrize._cache.pop((id(self.get_base_layer()), self.parameter_name), None)
            yield

    def _remove_parametrizations(self) -> None:
        chain = self.get_base_layer().parametrizations[self.parameter_name]
        # peft looks only for its _LoraParameterProxy; the experts' fast path registers a factors proxy instead.
        if len(chain) > 1 and type(chain[-1]).__module__.startswith("peft.") and "Proxy" in type(chain[-1]).__name__:
            del chain[-1]
            return
        super()._remove_parametrizations()


# peft recognises its parameter wrappers (to nest a second one on the same module) by the class name.
QuantizedExpertsLora.__name__ = QuantizedExpertsLora.__qualname__ = "ParamWrapper"


def nest_in_definition_order(model: torch.nn.Module) -> int:
    """Re-nest the LoRA wrappers of each quantised module so that the first-defined parameter's wrapper is the
    innermost, as peft nests them on an unquantised model; returns how many modules were re-nested.

    The nesting names the adapter's weights (`experts.base_layer.lora_A` is the inner wrapper's). peft wraps plain
    parameters in definition order but parametrized ones in alphabetical order, so without this an adapter trained
    on quantised experts would not load onto the 16-bit model (merge-lora, inference servers) and vice versa."""
    renested = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, ParamWrapper) or name.endswith(".base_layer"):
            continue
        chain = [module]
        while isinstance(chain[-1].base_layer, ParamWrapper):
            chain.append(chain[-1].base_layer)
        base = chain[-1].base_layer
        if len(chain) < 2 or not parametrize.is_parametrized(base):
            continue
        order = list(base.parametrizations.keys())  # registered in definition order by quantize_moe_experts
        wanted = sorted(chain, key=lambda w: order.index(w.parameter_name), reverse=True)  # outermost first
        if wanted == chain:
            continue
        for outer, inner in zip(wanted, [*wanted[1:], base], strict=True):
            outer.base_layer = inner
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, wanted[0])
        renested += 1
    return renested


def register_quantized_experts(config: LoraConfig, model: torch.nn.Module) -> LoraConfig:
    """Have peft wrap the parametrized (quantised) modules' parameters with QuantizedExpertsLora."""
    classes = {type(m) for _, m in model.named_modules() if parametrize.is_parametrized(m)}
    if classes:
        config._register_custom_module(dict.fromkeys(classes, QuantizedExpertsLora))
    return config


def continue_on_quantized_experts(model: torch.nn.Module, lora_dir: str) -> PeftModel:
    """lora_model_dir on quantised experts: inject, re-nest as the adapter was saved, then load its weights
    (peft's from_pretrained would load them into the alphabetical nesting)."""
    config = register_quantized_experts(LoraConfig.from_pretrained(lora_dir), model)
    config.inference_mode = False
    peft_model = get_peft_model(model, config)
    nest_in_definition_order(peft_model)
    result = set_peft_model_state_dict(peft_model, load_peft_weights(lora_dir))
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"lora_model_dir: the adapter in {lora_dir} does not fit this model ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected weights, e.g. {(missing + result.unexpected_keys)[0]})"
        )
    return peft_model
