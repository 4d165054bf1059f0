"""Load the tokenizer and the model to train: attention kernel, dtype, 4/8-bit quantisation, new tokens, LoRA."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from tokenizers import AddedToken
from transformers import AutoConfig, BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

from hpcft.core.errors import ConfigError
from hpcft.core.features.peft_extensions import PEFT_PASS_THROUGH
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.args import Precision, checkpointing_kwargs
from hpcft.trainer.loop.distributed import is_main_process, local_rank
from hpcft.trainer.model.bitnet import bitnet_linear_layers
from hpcft.trainer.model.fp8 import apply_fp8
from hpcft.trainer.model.freeze import freeze_adapter_except, freeze_except
from hpcft.trainer.model.gptq import load_gptq_model
from hpcft.trainer.model.loftq import loftq_arguments
from hpcft.trainer.model.moe_experts import (
    continue_on_quantized_experts,
    lora_target_parameters,
    nest_in_definition_order,
    quantize_moe_experts,
    register_quantized_experts,
)
from hpcft.trainer.model.multimodal_model import freeze_vision_tower, model_class_name, text_tokenizer
from hpcft.trainer.model.nvfp4_checkpoint import nvfp4_source, nvfp4_tensor_scales
from hpcft.trainer.model.nvfp4_merge_aware import prepare_merge_aware, register_merge_aware
from hpcft.trainer.model.offload import ActivationOffload, offloads_activations
from hpcft.trainer.model.qat import cuda_capability, prepare_qat
from hpcft.trainer.model.quantized_checkpoints import checkpoint_quantization
from hpcft.trainer.objectives.reward_trainer import adapter_config, init_score_head

log = logging.getLogger("hpcft.trainer")

EMBEDDING_MODULES = ("embed_tokens", "lm_head")


def resolve_attention(cfg: TrainConfig) -> str:
    """The attention implementation to load with: flash_attention_2 only when it can run, else sdpa (logged once)."""
    wanted = cfg.attention
    if wanted != "flash_attention_2":
        return wanted
    if importlib.util.find_spec("flash_attn") is None:
        reason = "the flash-attn package is not installed"
    elif not torch.cuda.is_available():
        reason = "there is no CUDA GPU"
    else:
        return wanted
    log.warning("flash_attention: flash_attention_2 was asked for but %s; using sdpa attention instead", reason)
    return "sdpa"


def from_pretrained_with_attention(model_cls: Any, base_model: str, kwargs: dict[str, Any]) -> PreTrainedModel:
    """from_pretrained; an architecture without an sdpa path in this transformers (Gemma 2) loads with eager
    attention instead of failing on the node, and the log says so."""
    try:
        return model_cls.from_pretrained(base_model, **kwargs)
    except ValueError as exc:
        if kwargs.get("attn_implementation") != "sdpa" or "scaled_dot_product_attention" not in str(exc):
            raise
    log.warning(
        "attention: %s has no sdpa attention in transformers %s; using eager attention (same results, more memory)",
        base_model,
        transformers.__version__,
    )
    return model_cls.from_pretrained(base_model, **{**kwargs, "attn_implementation": "eager"})


def load_training_tokenizer(cfg: TrainConfig) -> Any:
    """What tokenizes the rows: the tokenizer, or for a vision language model (processor_type) its processor,
    which holds the tokenizer and stands in for it all the way through (preprocessing and training alike, so both
    find the same prepared-dataset cache)."""
    if cfg.processor_type:
        from hpcft.trainer.model.multimodal_model import load_processor

        return load_processor(cfg)
    return load_tokenizer(cfg)


def load_tokenizer(cfg: TrainConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of base_model (or tokenizer_config) with the config's special_tokens and tokens added."""
    if cfg.tokenizer_use_mistral_common:
        from hpcft.trainer.data.mistral_common import load_mistral_tokenizer

        return load_mistral_tokenizer(cfg)
    tokenizer_cls = getattr(transformers, cfg.tokenizer_type, None)
    if tokenizer_cls is None:
        raise ConfigError(f"tokenizer_type: '{cfg.tokenizer_type}' is not a transformers tokenizer class")
    tokenizer = tokenizer_cls.from_pretrained(
        cfg.tokenizer_config or cfg.base_model,
        use_fast=cfg.tokenizer_use_fast,
        trust_remote_code=cfg.trust_remote_code,
        revision=cfg.model_revision,
    )
    for key, value in (cfg.special_tokens or {}).items():
        # AddedToken without stripping/normalising, so the token text round-trips exactly (as axolotl does).
        tokenizer.add_special_tokens({key: AddedToken(value, rstrip=False, lstrip=False, normalized=False)})
    if cfg.tokens:
        tokenizer.add_tokens([AddedToken(t, rstrip=False, lstrip=False, normalized=False) for t in cfg.tokens])
    if tokenizer.pad_token is None:
        log.info("the tokenizer has no pad token: padding with the eos token %r", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(cfg: TrainConfig, dtype: torch.dtype, zero3: bool) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for load_in_4bit (QLoRA: nf4, double quantisation) or load_in_8bit."""
    if cfg.load_in_4bit:
        settings: dict[str, Any] = {
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": dtype,
            # ZeRO-3 shards flat tensors of one dtype: store the 4-bit blocks in the compute dtype.
            "bnb_4bit_quant_storage": dtype if zero3 else torch.uint8,
        }
        for key, value in (cfg.bnb_config_kwargs or {}).items():  # axolotl's overrides, dtypes given by name
            settings[key] = getattr(torch, value) if key.endswith("dtype") or key.endswith("storage") else value
        return BitsAndBytesConfig(load_in_4bit=True, **settings)
    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def lora_target_modules(cfg: TrainConfig, model: torch.nn.Module) -> list[str] | str:
    """lora_target_modules, plus with lora_target_linear every linear layer's name except the output head.
    A string alone stays a string: peft reads it as a regular expression over module paths."""
    listed = cfg.lora_target_modules
    if isinstance(listed, str) and not cfg.lora_target_linear:
        return listed
    targets = [listed] if isinstance(listed, str) else list(listed or [])
    if cfg.lora_target_linear:
        output = model.get_output_embeddings()
        # bitsandbytes' Linear4bit / Linear8bitLt subclass nn.Linear, so QLoRA finds the same layers.
        names = {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output
        }
        skip = {"lm_head", *(cfg.lora_modules_to_save or [])}
        targets += sorted(names - skip - set(targets))
    return targets


def resize_embeddings(cfg: TrainConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embeddings to fit added tokens; with an adapter they must then be trained (modules_to_save)."""
    current = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= current:
        return
    if cfg.adapter and not set(EMBEDDING_MODULES) <= set(cfg.lora_modules_to_save or []):
        raise ConfigError(
            f"special_tokens/tokens add {len(tokenizer) - current} new token(s), whose embeddings a "
            f"frozen base cannot learn; set lora_modules_to_save: [embed_tokens, lm_head]"
        )
    # resize_token_embeddings_to_32x: the extra rows are never used as tokens; they only round the matrix shape.
    multiple = 32 if cfg.resize_token_embeddings_to_32x else None
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=multiple)
    log.info(
        "resized token embeddings %d -> %d for added tokens",
        current,
        model.get_input_embeddings().num_embeddings,
    )


def override_model_config(cfg: TrainConfig, config: Any) -> None:
    """model_config overrides (axolotl's `overrides_of_model_config`) and rope_scaling, set on the loaded config."""
    overrides = dict(cfg.overrides_of_model_config or {})
    rope = overrides.pop("rope_scaling", None) or cfg.rope_scaling
    for key, value in overrides.items():
        if not hasattr(config, key):
            log.warning("model_config: %s is not a setting of %s; setting it anyway", key, type(config).__name__)
        setattr(config, key, value)
    if rope:
        apply_rope_scaling(rope, config)


def model_source(cfg: TrainConfig) -> str:
    """Where from_pretrained reads the weights: base_model, or with base_model_ignore_patterns the local snapshot of
    the Hub model downloaded without the files matching them (a local folder is read as it is)."""
    if not cfg.base_model_ignore_patterns or Path(cfg.base_model).expanduser().is_dir():
        return cfg.base_model
    from huggingface_hub import snapshot_download

    patterns = cfg.base_model_ignore_patterns
    return snapshot_download(
        cfg.base_model,
        revision=cfg.model_revision,
        ignore_patterns=[patterns] if isinstance(patterns, str) else list(patterns),
    )


def random_model(cfg: TrainConfig, model_cls: Any, kwargs: dict[str, Any]) -> PreTrainedModel:
    """reinit_weights: the architecture of base_model (its config, with the config overrides) with freshly
    initialised weights, seeded by `seed`; under ZeRO-3 transformers builds it straight into partitions."""
    config = kwargs.get("config") or AutoConfig.from_pretrained(
        cfg.base_model, trust_remote_code=cfg.trust_remote_code, revision=cfg.model_revision
    )
    torch.manual_seed(cfg.seed)
    log.info("reinit_weights: building %s from its config with random weights", cfg.base_model)
    auto = model_cls if hasattr(model_cls, "from_config") else transformers.AutoModelForCausalLM
    return auto.from_config(
        config,
        dtype=kwargs["dtype"],
        attn_implementation=kwargs["attn_implementation"],
        trust_remote_code=cfg.trust_remote_code,
    )


def use_hub_kernels(cfg: TrainConfig) -> bool:
    """use_kernels: transformers' Hub kernels need a CUDA GPU and the `kernels` package; otherwise say so once."""
    if not cfg.use_kernels:
        return False
    if torch.cuda.is_available() and importlib.util.find_spec("kernels") is not None:
        return True
    reason = "there is no CUDA GPU" if not torch.cuda.is_available() else "the kernels package is not installed"
    log.warning("use_kernels: %s; loading the model with its own layers (same results)", reason)
    return False


def apply_rope_scaling(rope_scaling: dict[str, Any], config: Any) -> None:
    """rope_scaling as axolotl writes it (`type` or `rope_type`, `factor`, ...) over the model's own RoPE settings,
    which keep what the override does not name (rope_theta above all)."""
    scaling = dict(rope_scaling)
    kind = scaling.pop("type", None)
    scaling.setdefault("rope_type", kind)
    if not scaling["rope_type"]:
        raise ConfigError("rope_scaling needs a type, e.g. {type: linear, factor: 2.0} (linear, dynamic, yarn, ...)")
    config.rope_parameters = {**(getattr(config, "rope_parameters", None) or {}), **scaling}
    log.info("rope_scaling: %s", config.rope_parameters)


def prepare_for_adapter(cfg: TrainConfig, model: PreTrainedModel, quantized: bool, zero3: bool) -> PreTrainedModel:
    """What the base model needs before an adapter is put on it: k-bit preparation or gradient checkpointing."""
    gc_kwargs = checkpointing_kwargs(cfg)
    if quantized and not zero3:
        # Casts norms to fp32 and enables input grads; under ZeRO-3 the casts would break the uniform storage dtype.
        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(cfg.gradient_checkpointing), gradient_checkpointing_kwargs=gc_kwargs
        )
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=gc_kwargs)
        # Reentrant checkpointing: frozen embeddings give no grad, so checkpointed blocks would get none either.
        model.enable_input_require_grads()
    return model


def lora_config(cfg: TrainConfig, model: PreTrainedModel) -> LoraConfig:
    """The LoraConfig of a new adapter (rank, alpha, dropout, target modules and parameters, saved modules)."""
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_modules(cfg, model),
        modules_to_save=cfg.lora_modules_to_save,
        fan_in_fan_out=cfg.lora_fan_in_fan_out,
        bias="none",
        task_type="CAUSAL_LM",
        use_dora=bool(cfg.peft_use_dora),
        use_rslora=bool(cfg.peft_use_rslora),
        target_parameters=lora_target_parameters(cfg, model) if cfg.lora_target_parameters else None,
        **{arg: getattr(cfg, key) for key, arg in PEFT_PASS_THROUGH.items() if getattr(cfg, key) is not None},
        **loftq_arguments(cfg, cuda=torch.cuda.is_available()),
    )
    config = register_quantized_experts(config, model)
    if cfg.nvfp4_merge_aware:
        config = register_merge_aware(config, model)
    return adapter_config(cfg, config, model) if cfg.reward_model or cfg.process_reward_model else config


def add_lora(cfg: TrainConfig, model: PreTrainedModel, quantized: bool, zero3: bool) -> PeftModel:
    """Wrap the model with a new LoRA adapter, or continue the one in lora_model_dir."""
    model = prepare_for_adapter(cfg, model, quantized, zero3)
    if cfg.lora_model_dir:
        log.info("continuing the LoRA adapter in %s", cfg.lora_model_dir)
        if cfg.quantize_moe_experts:
            return continue_on_quantized_experts(model, cfg.lora_model_dir)
        if cfg.nvfp4_merge_aware:  # the adapter's own LoraConfig, with the merge-aware layers
            config = register_merge_aware(LoraConfig.from_pretrained(cfg.lora_model_dir), model)
            return PeftModel.from_pretrained(model, cfg.lora_model_dir, config=config, is_trainable=True)
        return PeftModel.from_pretrained(model, cfg.lora_model_dir, is_trainable=True)
    peft_model = get_peft_model(model, lora_config(cfg, model))
    nest_in_definition_order(peft_model)
    return peft_model


def load_model(
    cfg: TrainConfig,
    tokenizer: PreTrainedTokenizerBase,
    precision: Precision,
    zero3: bool = False,
    wrap_adapter: bool = True,
) -> PreTrainedModel | PeftModel:
    """The model to train: base weights (quantised for QLoRA/8-bit), embeddings fitted to the tokenizer, adapter.
    wrap_adapter=False prepares the base for an adapter that the caller's trainer adds
    (see trainer/objectives/preference_trainer.py)."""
    model_cls = getattr(transformers, model_class_name(cfg), None)  # processor_type: AutoModelForImageTextToText
    if model_cls is None:
        raise ConfigError(f"type: '{cfg.model_type}' is not a transformers model class (e.g. AutoModelForCausalLM)")
    kwargs: dict[str, Any] = {
        "dtype": precision.dtype,
        "attn_implementation": resolve_attention(cfg),
        "trust_remote_code": cfg.trust_remote_code,
        "revision": cfg.model_revision,
    }
    # cls_model_config: the config class axolotl reads it with; num_labels: the classification head's outputs.
    head = {"num_labels": cfg.num_labels} if cfg.num_labels else {}
    if cfg.base_model_config or cfg.rope_scaling or cfg.overrides_of_model_config or head or cfg.cls_model_config:
        config_cls = getattr(transformers, cfg.cls_model_config) if cfg.cls_model_config else AutoConfig
        kwargs["config"] = config_cls.from_pretrained(
            cfg.base_model_config or cfg.base_model,
            trust_remote_code=cfg.trust_remote_code,
            revision=None if cfg.base_model_config else cfg.model_revision,
            **head,
        )
        override_model_config(cfg, kwargs["config"])
    if use_hub_kernels(cfg):
        kwargs["use_kernels"] = True
    quant = quantization_config(cfg, precision.dtype, zero3)
    if quant is not None:
        kwargs["quantization_config"] = quant
        if torch.cuda.is_available() and not zero3:
            kwargs["device_map"] = {"": local_rank()}  # each DDP rank holds its own quantised copy on its GPU
    kwargs.update(checkpoint_quantization(cfg))
    if cfg.reinit_weights:
        model = random_model(cfg, model_cls, kwargs)
    elif cfg.gptq:
        model = load_gptq_model(cfg, model_cls, kwargs, from_pretrained_with_attention)
    else:
        # An NVFP4 (ModelOpt) checkpoint loads from its dequantised 16-bit copy (trainer/model/nvfp4_checkpoint.py).
        nvfp4 = nvfp4_source(cfg.base_model, cfg.model_revision, precision.dtype, cfg.adapter)
        if nvfp4 and "config" in kwargs:  # the overridden config came from the NVFP4 checkpoint: load it as 16-bit
            kwargs["config"].__dict__.pop("quantization_config", None)
        source = nvfp4 or model_source(cfg)
        model = from_pretrained_with_attention(model_cls, source, kwargs)
        if cfg.nvfp4_merge_aware:
            prepare_merge_aware(model, nvfp4_tensor_scales(source), cfg.base_model)
    if cfg.use_onebitllms:
        model = bitnet_linear_layers(model)
    if quant is not None:
        import bitsandbytes as bnb

        count = sum(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in model.modules())
        log.info("loaded %s with %d %d-bit linear layers", cfg.base_model, count, 4 if cfg.load_in_4bit else 8)
    if cfg.quantize_moe_experts:
        quantize_moe_experts(cfg, model)
    if cfg.reward_model or cfg.process_reward_model:
        init_score_head(model)
    # Training needs no KV cache; without it transformers also keeps packed samples apart (see packing.py).
    model.config.use_cache = False
    resize_embeddings(cfg, model, text_tokenizer(tokenizer))
    if cfg.unfrozen_parameters and not cfg.adapter:
        freeze_except(model, cfg.unfrozen_parameters)
    # Before an adapter: it then wraps the fake-quantised / float8 base layers, as axolotl's order does.
    if cfg.qat:
        prepare_qat(cfg.qat, model, cuda_capability())
    apply_fp8(cfg, model, cuda_capability(), fsdp=cfg.uses_fsdp and torch.cuda.is_available())
    if cfg.adapter and not wrap_adapter:
        return prepare_for_adapter(cfg, model, quantized=quant is not None, zero3=zero3)
    if cfg.adapter:
        model = add_lora(cfg, model, quantized=quant is not None, zero3=zero3)
        if cfg.unfrozen_parameters:
            freeze_adapter_except(model, cfg.unfrozen_parameters)
        if is_main_process():
            model.print_trainable_parameters()
    freeze_vision_tower(cfg, model)  # freeze_mm_modules: after the adapter, as axolotl (its tower layers too)
    if offloads_activations(cfg):
        model.activation_offload = ActivationOffload(model)  # kept with the model: its hooks are the model's
    return model
