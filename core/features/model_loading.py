"""Login-node checks of axolotl's model- and tokenizer-loading keys: quantisation configs named by class
(`model_quantization_config`), GPTQ checkpoints, onebitllms, pure half precision (`float16`/`bfloat16`),
`reinit_weights` and the mistral-common tokenizer. Torch-free: the launcher never imports transformers, so the
quantisation config classes and their keyword arguments are listed here (a trainer test keeps the list equal to
transformers' own signatures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

# The classes axolotl builds for model_quantization_config, with the keyword arguments each accepts
# (transformers 5.24's signatures). Both describe how a pre-quantised checkpoint is loaded.
QUANTIZATION_CONFIG_KWARGS: dict[str, frozenset[str]] = {
    "Mxfp4Config": frozenset({"modules_to_not_convert", "dequantize"}),
    "FineGrainedFP8Config": frozenset(
        {
            "activation_scheme",
            "weight_block_size",
            "dequantize",
            "modules_to_not_convert",
            "modules_to_convert",
            "scale_fmt",
            "expert_dtype",
        }
    ),
}

# Dataset types the mistral-common tokenizer can format: it renders conversations itself (no Jinja template), and
# it adds BOS and EOS to every text it encodes, which would put an EOS in the middle of an alpaca prompt.
MISTRAL_COMMON_DATASET_TYPES = ("chat_template", "completion", None)


def check_model_loading(cfg: TrainConfig) -> None:
    """Raise ValueError (one line naming the key) for a bad value or combination of the model-loading keys."""
    _check_quantization_config(cfg)
    _check_half_precision(cfg)
    quantized = _quantized_loading(cfg)
    if cfg.gptq and cfg.adapter != "lora":
        raise ValueError(
            "gptq: true trains a LoRA adapter on a GPTQ-quantised checkpoint (its weights are not trained); "
            "set adapter: lora"
        )
    if cfg.gptq_disable_exllama is not None and not cfg.gptq:
        raise ValueError("gptq_disable_exllama applies to gptq: true only; remove it")
    if len(quantized) > 1 and set(quantized) != {"load_in_4bit", "load_in_8bit"}:  # that pair: schema.py
        raise ValueError(f"{' and '.join(quantized)} both quantise the model; keep one")
    if cfg.reinit_weights and quantized:
        raise ValueError(
            f"reinit_weights builds a randomly initialised model from the config, which cannot be combined with "
            f"{quantized[0]} (that loads quantised pretrained weights); keep one"
        )
    if cfg.reinit_weights and cfg.lora_model_dir:
        raise ValueError("reinit_weights with lora_model_dir would put a trained adapter on random weights; keep one")
    if cfg.use_onebitllms and quantized:
        raise ValueError(f"use_onebitllms trains the full-precision weights of a BitNet model; remove {quantized[0]}")
    if cfg.tokenizer_use_mistral_common:
        _check_mistral_common(cfg)


def _quantized_loading(cfg: TrainConfig) -> list[str]:
    """The keys that make from_pretrained load quantised weights."""
    keys = [key for key in ("load_in_4bit", "load_in_8bit", "gptq") if getattr(cfg, key)]
    if cfg.model_quantization_config and not (cfg.model_quantization_config_kwargs or {}).get("dequantize"):
        keys.append("model_quantization_config")
    return keys


def _check_quantization_config(cfg: TrainConfig) -> None:
    name, kwargs = cfg.model_quantization_config, cfg.model_quantization_config_kwargs
    if name is None:
        if kwargs:
            raise ValueError("model_quantization_config_kwargs needs model_quantization_config (e.g. Mxfp4Config)")
        return
    if name not in QUANTIZATION_CONFIG_KWARGS:
        raise ValueError(
            f"model_quantization_config: '{name}' is not one of {', '.join(QUANTIZATION_CONFIG_KWARGS)} "
            "(the transformers classes axolotl builds); for bitsandbytes use load_in_4bit / load_in_8bit"
        )
    unknown = sorted(set(kwargs or {}) - QUANTIZATION_CONFIG_KWARGS[name])
    if unknown:
        raise ValueError(
            f"model_quantization_config_kwargs: {', '.join(unknown)} is not an argument of {name} "
            f"(it takes {', '.join(sorted(QUANTIZATION_CONFIG_KWARGS[name]))})"
        )
    if not (kwargs or {}).get("dequantize") and cfg.adapter is None:
        raise ValueError(
            f"model_quantization_config: {name} without dequantize: true keeps the weights quantised, which "
            "cannot be fully fine-tuned; set model_quantization_config_kwargs: {dequantize: true} or use an adapter"
        )


def _check_half_precision(cfg: TrainConfig) -> None:
    """float16 / bfloat16 (axolotl: no AMP, the weights themselves in half precision)."""
    if cfg.float16 and cfg.bfloat16:
        raise ValueError("float16 and bfloat16 are mutually exclusive; keep one")
    if cfg.float16 and (cfg.bf16 is True or cfg.bf16 == "full"):
        raise ValueError("float16 (weights in fp16) and bf16 disagree; set bf16: false or remove float16")
    if cfg.float16 and cfg.fp16:
        raise ValueError(
            "float16 trains fp16 weights without mixed precision, fp16 trains fp32 weights with fp16 mixed "
            "precision; keep one"
        )
    if cfg.bfloat16 and (cfg.fp16 or cfg.bf16 is False):
        raise ValueError(
            f"bfloat16 (weights in bf16) and {'fp16: true' if cfg.fp16 else 'bf16: false'} disagree; keep one"
        )


def _check_mistral_common(cfg: TrainConfig) -> None:
    # mistral-common's tokenizer has a fixed vocabulary and renders conversations itself (as in axolotl).
    for key in ("special_tokens", "tokens", "chat_template", "chat_template_jinja"):
        if getattr(cfg, key):
            raise ValueError(
                f"{key} cannot be used with tokenizer_use_mistral_common: the mistral-common tokenizer's "
                "vocabulary is fixed and it formats conversations itself; remove it"
            )
    if cfg.rl:
        raise ValueError(
            f"tokenizer_use_mistral_common cannot be used with rl: {cfg.rl} yet (hpcft formats preference rows with "
            "a Jinja chat template); remove one of them"
        )
    if cfg.tokenizer_type != "AutoTokenizer":
        raise ValueError("tokenizer_type cannot be used with tokenizer_use_mistral_common (it picks the tokenizer)")
    for where, group in (("datasets", cfg.datasets), ("test_datasets", cfg.test_datasets or [])):
        for i, ds in enumerate(group):
            if ds.type not in MISTRAL_COMMON_DATASET_TYPES:
                raise ValueError(
                    f"{where}[{i}]: type {ds.type} cannot be used with tokenizer_use_mistral_common (mistral-common "
                    "adds BOS and EOS to every text it encodes); use type: chat_template"
                )
            if ds.chat_template or ds.chat_template_jinja:
                raise ValueError(
                    f"{where}[{i}].chat_template cannot be used with tokenizer_use_mistral_common (the "
                    "mistral-common tokenizer formats conversations itself); remove it"
                )


def model_loading_notes(cfg: TrainConfig, gpus_per_node: int) -> list[str]:
    """Warnings for `hpcft validate`: keys without effect, and what a job on nodes without GPUs does instead of a
    GPU-only feature."""
    notes: list[str] = []
    if cfg.tokenizer_use_mistral_common and cfg.eot_tokens:
        # As in axolotl, whose mistral-common strategy looks for EOS only.
        notes.append(
            "eot_tokens has no effect with tokenizer_use_mistral_common: mistral-common ends each assistant turn "
            "with EOS, which train_on_eos / train_on_eot decide about"
        )
    if cfg.float16 and not (cfg.uses_fsdp and gpus_per_node):  # the job trains under DeepSpeed
        instead = (
            "the job trains in DeepSpeed's fp16 mode (fp32 master weights, loss scaling)"
            if gpus_per_node
            else "this profile's nodes have no GPUs, where DeepSpeed has no fp16 either: the job trains in fp32"
        )
        notes.append(f"float16: DeepSpeed ZeRO has no pure-fp16 mode; {instead}")
    if gpus_per_node:
        return notes
    if cfg.gptq:
        notes.append(
            "gptq: GPTQ kernels need CUDA GPUs and gptqmodel; this profile has none, so the job unpacks the GPTQ "
            "weights to the training dtype and trains the LoRA adapter on them (same weights, more memory)"
        )
    if cfg.use_onebitllms:
        notes.append(
            "use_onebitllms: onebitllms' BitNet layers are Triton kernels for CUDA GPUs; this profile has none, "
            "so the job trains the model's ordinary linear layers (no 1.58-bit quantisation-aware training)"
        )
    if cfg.model_quantization_config and not (cfg.model_quantization_config_kwargs or {}).get("dequantize"):
        notes.append(
            f"model_quantization_config: {cfg.model_quantization_config} keeps quantised weights only on CUDA "
            "GPUs; this profile has none, so transformers loads the checkpoint dequantised to bf16 (more memory)"
        )
    return notes


def check_job_loading(cfg: TrainConfig, where: str) -> list[str]:
    """load_job's checks of the loading keys that need the profile or the login node's files: ConfigError for a
    job that would fail on its nodes, and the warnings of model_loading_notes."""
    check_local_checkpoint(cfg, where)
    gpus = cfg.launch.gpus_per_node
    if cfg.use_onebitllms and gpus and not cfg.uses_fsdp:
        from hpcft.core.features.deepspeed_config import default_preset, load_source, zero_stage

        if zero_stage(load_source(cfg.deepspeed or default_preset(cfg))) == 3:
            raise ConfigError(
                f"{where}: use_onebitllms replaces the linear layers after loading, which DeepSpeed ZeRO-3's "
                "partitioned weights do not allow; use FSDP (as axolotl's falcon-e example: fsdp_version: 2 with "
                "fsdp_config) or deepspeed: zero2"
            )
    return [f"{where}: {note}" for note in model_loading_notes(cfg, gpus)]


def check_local_checkpoint(cfg: TrainConfig, where: str) -> None:
    """What can be read from a local base_model folder: gptq needs a GPTQ checkpoint (as axolotl checks)."""
    config_file = Path(cfg.base_model_config or cfg.base_model).expanduser() / "config.json"
    if not cfg.gptq or not config_file.is_file():
        return
    try:
        settings = json.loads(config_file.read_text()).get("quantization_config") or {}
    except (OSError, ValueError, AttributeError):
        return  # an unreadable config.json is reported by the trainer's own loading
    if not isinstance(settings, dict) or settings.get("quant_method") != "gptq":
        raise ConfigError(
            f"{where}: gptq: true, but {config_file} has no GPTQ quantization_config (quant_method: gptq); point "
            "base_model at a GPTQ checkpoint or remove gptq"
        )
