"""Login-node rules for the LoRA/quantisation extensions: MoE expert quantisation, LoRA on parameters
(`lora_target_parameters`), extra bitsandbytes settings (`bnb_config_kwargs`), LoftQ (`peft.loftq_config`), LoRA+,
peft's other LoraConfig options and `unfrozen_parameters` with an adapter (docs/adapters.md).

The launcher never imports torch or transformers, so the BitsAndBytesConfig arguments are listed here by name.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# BitsAndBytesConfig's own arguments (transformers 5) that make sense for a 4-bit QLoRA load.
BNB_4BIT_KWARGS = {
    "bnb_4bit_quant_type": ("nf4", "fp4"),
    "bnb_4bit_use_double_quant": (True, False),
    "bnb_4bit_compute_dtype": ("float16", "bfloat16", "float32"),
    "bnb_4bit_quant_storage": ("uint8", "float16", "bfloat16", "float32"),
    "llm_int8_skip_modules": None,  # a list of module names kept unquantised
    "llm_int8_threshold": None,
    "llm_int8_has_fp16_weight": (True, False),
    "llm_int8_enable_fp32_cpu_offload": (True, False),
}


# Keys handed to peft's LoraConfig unchanged (trainer/model/loading.py): axolotl key -> LoraConfig argument.
PEFT_PASS_THROUGH = {
    "lora_rank_pattern": "rank_pattern",
    "lora_alpha_pattern": "alpha_pattern",
    "peft_layers_to_transform": "layers_to_transform",
    "peft_layers_pattern": "layers_pattern",
    "peft_init_lora_weights": "init_lora_weights",
    "peft_trainable_token_indices": "trainable_token_indices",
    "peft_ensure_weight_tying": "ensure_weight_tying",
    "peft_layer_replication": "layer_replication",
}
# init_lora_weights values that need nothing but the base weights (eva, corda and lora_ga need data passes).
INIT_LORA_WEIGHTS = ("gaussian", "pissa", "olora", "orthogonal")


class LoftqConfig(BaseModel):
    """`peft.loftq_config:` LoftQ initialisation of the LoRA weights."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    loftq_bits: Literal[4, 8] = 4
    """Bits of the quantised base LoftQ fits the adapter to (4 or 8)."""


class PeftBlock(BaseModel):
    """`peft:` block (axolotl's subset of peft options)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    loftq_config: LoftqConfig | None = None
    """LoftQ: initialise LoRA so that quantised base + adapter approximates the original weights."""


def _as_dtype_name(value: Any) -> Any:
    # axolotl configs write torch dtypes as `bfloat16` or `torch.bfloat16`.
    return value.removeprefix("torch.") if isinstance(value, str) else value


def check_bnb_config_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Known BitsAndBytesConfig arguments with allowed values; dtype names normalised (`torch.bfloat16` -> bfloat16)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in ("load_in_4bit", "load_in_8bit"):
            raise ValueError(f"bnb_config_kwargs.{key}: set the top-level {key} key instead")
        if key not in BNB_4BIT_KWARGS:
            raise ValueError(
                f"bnb_config_kwargs.{key} is not a bitsandbytes 4-bit setting; use one of "
                f"{', '.join(sorted(BNB_4BIT_KWARGS))}"
            )
        value = _as_dtype_name(value)
        if key == "llm_int8_threshold" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"bnb_config_kwargs.llm_int8_threshold: {value!r} is not a number")
        if key == "llm_int8_skip_modules" and not (
            isinstance(value, list) and all(isinstance(name, str) for name in value)
        ):
            raise ValueError(f"bnb_config_kwargs.llm_int8_skip_modules: {value!r} is not a list of module names")
        allowed = BNB_4BIT_KWARGS[key]
        if allowed is not None and value not in allowed:
            raise ValueError(f"bnb_config_kwargs.{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        out[key] = value
    return out


def check_peft_extensions(cfg: Any) -> None:
    """Combinations axolotl refuses too (same rules), each one line naming the key."""
    if cfg.quantize_moe_experts:
        if cfg.adapter not in ("lora", "qlora"):
            raise ValueError("quantize_moe_experts needs adapter: lora or qlora (the experts stay frozen)")
        if not (cfg.load_in_4bit or cfg.load_in_8bit):
            raise ValueError("quantize_moe_experts needs load_in_4bit: true (or load_in_8bit: true)")
        if cfg.lora_target_linear:
            raise ValueError(
                "quantize_moe_experts does not work with lora_target_linear; list lora_target_modules and put LoRA "
                "on the experts with lora_target_parameters (e.g. [experts.gate_up_proj, experts.down_proj])"
            )
    if cfg.lora_target_parameters:
        if cfg.quantize_moe_experts and cfg.rl:
            raise ValueError(
                f"lora_target_parameters on quantised experts is not supported with rl: {cfg.rl} (TRL adds the "
                "adapter); remove quantize_moe_experts or lora_target_parameters"
            )
        if not cfg.adapter:
            raise ValueError("lora_target_parameters needs adapter: lora or qlora")
        if cfg.lora_dropout:
            raise ValueError(
                f"lora_target_parameters needs lora_dropout: 0 (got {cfg.lora_dropout}): peft's LoRA on parameters "
                "cannot apply dropout"
            )
        if cfg.peft_use_dora:
            raise ValueError("lora_target_parameters does not work with peft_use_dora (peft has no DoRA on parameters)")
        if cfg.lora_fan_in_fan_out:
            raise ValueError("lora_target_parameters does not work with lora_fan_in_fan_out")
    for key in PEFT_PASS_THROUGH:
        if getattr(cfg, key) is not None and not cfg.adapter:
            raise ValueError(f"{key} configures the LoRA adapter; it needs adapter: lora or qlora")
    if cfg.loraplus_lr_ratio is not None:
        if not cfg.adapter:
            raise ValueError("loraplus_lr_ratio sets the learning rate of LoRA's B matrices; it needs adapter: lora")
        if cfg.rl:
            raise ValueError(f"loraplus_lr_ratio is not supported with rl: {cfg.rl}; remove it")
    if cfg.loraplus_lr_embedding is not None and cfg.loraplus_lr_ratio is None:
        raise ValueError("loraplus_lr_embedding applies with LoRA+ only; set loraplus_lr_ratio too (or remove it)")
    if cfg.peft_layers_pattern and cfg.peft_layers_to_transform is None:
        raise ValueError("peft_layers_pattern names the layers that peft_layers_to_transform indexes; set that too")
    if cfg.peft_layers_to_transform is not None and cfg.unfrozen_parameters:
        raise ValueError("unfrozen_parameters and peft_layers_to_transform both choose what trains; keep one")
    for key in ("lora_rank_pattern", "lora_alpha_pattern"):
        for pattern, value in (getattr(cfg, key) or {}).items():
            if value < 1:
                raise ValueError(f"{key}: '{pattern}': {value} is not a positive integer")
    init = cfg.peft_init_lora_weights
    if isinstance(init, str) and init not in INIT_LORA_WEIGHTS and not re.fullmatch(r"pissa_niter_\d+", init):
        raise ValueError(
            f"peft_init_lora_weights: '{init}' is not one of true, false, {', '.join(INIT_LORA_WEIGHTS)}, "
            "pissa_niter_<n> (LoftQ is set with peft.loftq_config)"
        )
    if cfg.bnb_config_kwargs and not cfg.load_in_4bit:
        raise ValueError("bnb_config_kwargs tunes the 4-bit load; it needs load_in_4bit: true with adapter: qlora")
    loftq = cfg.peft.loftq_config if cfg.peft else None
    if loftq is not None:
        if cfg.adapter != "lora" or cfg.load_in_4bit or cfg.load_in_8bit:
            raise ValueError(
                "peft.loftq_config needs adapter: lora on an unquantised base (LoftQ quantises the weights itself); "
                "remove load_in_4bit/load_in_8bit or the peft block"
            )
        if cfg.lora_model_dir:
            raise ValueError("peft.loftq_config initialises a new adapter; it does not apply with lora_model_dir")
        if cfg.peft_init_lora_weights is not None:
            raise ValueError("peft.loftq_config and peft_init_lora_weights both set the initialisation; keep one")


def check_unfrozen_with_adapter(cfg: Any) -> None:
    """unfrozen_parameters with an adapter selects which adapter weights train (trainer/model/freeze.py); row ranges and
    TRL-added adapters have no meaning there."""
    for pattern in cfg.unfrozen_parameters:
        if re.search(r"\[\d*(:\d*)?\]$", pattern):
            raise ValueError(
                f"unfrozen_parameters: the row range in '{pattern}' applies to full fine-tuning only; with an "
                "adapter remove it (or train the embeddings with lora_modules_to_save)"
            )
    if cfg.rl:
        raise ValueError(
            f"unfrozen_parameters with an adapter is not supported with rl: {cfg.rl} (TRL adds the adapter); "
            "remove unfrozen_parameters"
        )


def gpu_only_notes(cfg: Any) -> list[str]:
    """Warnings for `hpcft validate` when the profile's nodes have no GPU and a key here then does less."""
    if cfg.launch.gpus_per_node or not (cfg.peft and cfg.peft.loftq_config):
        return []
    return [
        "peft.loftq_config: LoftQ initialisation runs on CUDA GPUs; this profile has none, so the job initialises "
        "LoRA the standard way (the adapter starts at zero)"
    ]


def _mentions_experts(config: Any) -> bool:
    # MoE configs count their experts under many names (num_experts, num_local_experts, n_routed_experts,
    # num_experts_per_tok, ...), at the top or under text_config; a dense model's config names none.
    if isinstance(config, dict):
        return any("expert" in str(key).lower() or _mentions_experts(value) for key, value in config.items())
    return False


def moe_model_problem(cfg: Any) -> str | None:
    """quantize_moe_experts on a model whose config.json (found on this login node) has no experts: say so here
    rather than after the queue wait. Nothing to say when the config cannot be found."""
    from hpcft.core.errors import ConfigError
    from hpcft.core.model_size import find_model_config

    if not cfg.quantize_moe_experts:
        return None
    try:
        config, source = find_model_config(cfg.base_model_config or cfg.base_model)
    except ConfigError:
        return None
    if _mentions_experts(config):
        return None
    return (
        f"quantize_moe_experts: {cfg.base_model} is not a mixture-of-experts model ({source} names no experts); "
        "remove quantize_moe_experts"
    )
