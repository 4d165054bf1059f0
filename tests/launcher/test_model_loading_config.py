"""Login-node checks of the model/tokenizer loading keys (core/features/model_loading.py): a bad value or combination is
one line naming the key, exit 2, before anything is queued."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hpcft.core.errors import ConfigError
from hpcft.core.features.model_loading import QUANTIZATION_CONFIG_KWARGS
from hpcft.core.schema import TrainConfig
from hpcft.core.validation import check_keys
from hpcft.launcher.cli import main
from hpcft.launcher.config import load_job

CHAT = {"path": "d.jsonl", "type": "chat_template"}
LORA = {"adapter": "lora", "lora_target_linear": True}


def config(**keys) -> TrainConfig:
    return TrainConfig.model_validate({"base_model": "m", "datasets": [dict(CHAT)], **keys})


def refused(match: str, **keys) -> None:
    with pytest.raises(ValidationError, match=match):
        config(**keys)


def test_quantization_config_class_and_arguments_are_checked():
    gpt_oss = config(model_quantization_config="Mxfp4Config", model_quantization_config_kwargs={"dequantize": True})
    assert gpt_oss.model_quantization_config_kwargs == {"dequantize": True}
    config(model_quantization_config="FineGrainedFP8Config", **LORA)  # quantised weights under a LoRA: fine
    refused(
        "'BitsAndBytesConfig' is not one of Mxfp4Config, FineGrainedFP8Config",
        model_quantization_config="BitsAndBytesConfig",
    )
    refused(
        "model_quantization_config_kwargs: dequantise is not an argument of Mxfp4Config",
        model_quantization_config="Mxfp4Config",
        model_quantization_config_kwargs={"dequantise": True},
    )
    refused("_kwargs needs model_quantization_config", model_quantization_config_kwargs={"a": 0})
    refused("cannot be fully fine-tuned", model_quantization_config="Mxfp4Config")
    refused(
        "load_in_8bit and model_quantization_config both quantise",
        model_quantization_config="Mxfp4Config",
        load_in_8bit=True,
        **LORA,
    )
    assert set(QUANTIZATION_CONFIG_KWARGS) == {"Mxfp4Config", "FineGrainedFP8Config"}


def test_half_precision_keys_agree_with_the_mixed_precision_ones():
    assert config(float16=True, bf16=False).float16
    assert config(float16=True).bf16 == "auto"  # auto: the weights' fp16 wins (see trainer/loop/args.py)
    refused("float16 and bfloat16 are mutually exclusive", float16=True, bfloat16=True)
    refused("float16 \\(weights in fp16\\) and bf16 disagree", float16=True, bf16=True)
    refused("float16 trains fp16 weights without mixed precision", float16=True, fp16=True)
    refused("bfloat16 \\(weights in bf16\\) and bf16: false disagree", bfloat16=True, bf16=False)


def test_gptq_trains_a_lora_adapter_only():
    assert config(gptq=True, gptq_disable_exllama=True, **LORA).gptq
    refused("gptq: true trains a LoRA adapter on a GPTQ-quantised checkpoint", gptq=True)
    refused("gptq: true trains a LoRA adapter", gptq=True, adapter="qlora", load_in_4bit=True, lora_target_linear=True)
    refused("gptq_disable_exllama applies to gptq: true only", gptq_disable_exllama=True)


def test_reinit_weights_cannot_combine_with_quantised_or_trained_weights():
    assert config(reinit_weights=True).reinit_weights
    refused("reinit_weights builds a randomly initialised model", reinit_weights=True, load_in_8bit=True, **LORA)
    refused("reinit_weights with lora_model_dir", reinit_weights=True, lora_model_dir="adapter", **LORA)


def test_mistral_common_refuses_what_its_fixed_tokenizer_cannot_do():
    assert config(tokenizer_use_mistral_common=True).tokenizer_use_mistral_common
    for key, value in (
        ("special_tokens", {"pad_token": "<pad>"}),
        ("tokens", ["<x>"]),
        ("chat_template", "chatml"),
    ):
        refused(f"{key} cannot be used with tokenizer_use_mistral", tokenizer_use_mistral_common=True, **{key: value})
    refused("cannot be used with rl: dpo yet", tokenizer_use_mistral_common=True, rl="dpo")
    with pytest.raises(ValidationError, match=r"datasets\[0\]: type alpaca cannot be used with tokenizer_use_mistral"):
        TrainConfig.model_validate(
            {"base_model": "m", "tokenizer_use_mistral_common": True, "datasets": [{"path": "d", "type": "alpaca"}]}
        )


def test_validate_names_the_key_and_exits_2(workspace, capsys):
    cfg = workspace / "cfg.yaml"
    cfg.write_text(cfg.read_text() + "model_quantization_config: Mxfp4\n")
    assert main(["validate", str(cfg), "--profile", "local"]) == 2
    err = capsys.readouterr().err
    assert "model_quantization_config: 'Mxfp4' is not one of Mxfp4Config, FineGrainedFP8Config" in err
    assert "Traceback" not in err


def test_local_profile_says_what_runs_instead_of_gpu_only_loading(workspace):
    cfg = workspace / "cfg.yaml"
    cfg.write_text(cfg.read_text() + "use_onebitllms: true\nbase_model_ignore_patterns: pytorch*\n")
    job = load_job(cfg, "local")
    assert any("use_onebitllms: onebitllms' BitNet layers are Triton kernels" in w for w in job.warnings)
    # voxtral's example: eot_tokens with mistral-common is accepted and named as without effect (as in axolotl).
    cfg.write_text(cfg.read_text() + "tokenizer_use_mistral_common: true\neot_tokens: [<end_of_turn>]\n")
    warnings = load_job(cfg, "local").warnings
    assert any("eot_tokens has no effect with tokenizer_use_mistral_common" in w for w in warnings)
    assert job.cfg.base_model_ignore_patterns == "pytorch*"
    cfg.write_text(cfg.read_text() + "float16: true\nbf16: false\n")
    warnings = load_job(cfg, "local").warnings
    assert any("float16: DeepSpeed ZeRO has no pure-fp16 mode; this profile's nodes have no GPU" in w for w in warnings)


def test_a_hub_attention_kernel_runs_as_sdpa_with_a_warning():
    # gpt-oss's examples: attn_implementation: kernels-community/vllm-flash-attn3 (flash attention from the Hub).
    raw = {"base_model": "m", "datasets": [dict(CHAT)], "attn_implementation": "kernels-community/vllm-flash-attn3"}
    warnings = check_keys(raw, "cfg.yaml")
    assert raw["attn_implementation"] == "sdpa"
    assert any("'attn_implementation: kernels-community/vllm-flash-attn3' has no effect" in w for w in warnings)
    with pytest.raises(ValidationError, match="attn_implementation"):
        TrainConfig.model_validate({**raw, "attn_implementation": "flash3"})


def test_onebitllms_on_gpus_needs_a_sharding_that_keeps_whole_layers(workspace):
    cfg = workspace / "cfg.yaml"
    cfg.write_text(cfg.read_text() + "use_onebitllms: true\n")
    with pytest.raises(ConfigError, match="use_onebitllms replaces the linear layers after loading, which DeepSpeed"):
        load_job(cfg, "local", cli_launch={"gpus_per_node": 4})  # the default preset of a full fine-tune: ZeRO-3
    assert load_job(cfg, "local", overrides=["deepspeed=zero2"], cli_launch={"gpus_per_node": 4}).cfg.use_onebitllms
