"""NVFP4 (ModelOpt) base checkpoints: a tiny random Llama and Qwen3-MoE are quantised to the ModelOpt NVFP4 layout
with torchao's NVFP4 quantiser (uint8 e2m1 pairs, float8_e4m3fn block scales, float32 weight_scale_2), saved under
the same names and config as NVIDIA's releases, then loaded through load_model: the weights must equal torchao's
dequantisation exactly, the copy is cached and reused, and LoRA (on modules and on expert parameters) trains."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hpcft.launcher.schema import TrainConfig
from hpcft.trainer.args import Precision
from hpcft.trainer.model import load_model, load_tokenizer
from hpcft.trainer.nvfp4_checkpoint import SCALES_FILE, dequantize_nvfp4
from hpcft.trainer.tiny import make_tiny_model, make_tiny_tokenizer

EXCLUDED = ("lm_head", "mlp.gate")  # as in NVIDIA's releases: the output head and the MoE router stay 16-bit


def quantize_to_modelopt(source: Path, target: Path, in_config: bool) -> dict[str, torch.Tensor]:
    """Write source's checkpoint in the ModelOpt NVFP4 layout to target; returns the NVFP4-rounded weights
    (torchao's dequantisation, float32) by tensor name. in_config: quantization_config in config.json, else
    hf_quant_config.json (both are how ModelOpt exports say so)."""
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    shutil.copytree(source, target)
    out, rounded = {}, {}
    with safe_open(str(source / "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            base = name.removesuffix(".weight")
            if tensor.dim() != 2 or not base.endswith("_proj") or any(base.endswith(e) for e in EXCLUDED):
                out[name] = tensor
                continue
            scale = per_tensor_amax_to_scale(tensor.float().abs().max())
            nvfp4 = NVFP4Tensor.to_nvfp4(tensor.float(), per_tensor_scale=scale)
            out[name] = nvfp4.qdata
            out[f"{base}.weight_scale"] = nvfp4.scale
            out[f"{base}.weight_scale_2"] = scale.reshape(())
            out[f"{base}.input_scale"] = torch.tensor(1.0)
            rounded[name] = nvfp4.dequantize(torch.float32)
            assert nvfp4.qdata.dtype == torch.uint8 and nvfp4.scale.dtype == torch.float8_e4m3fn
    save_file(out, str(target / "model.safetensors"), metadata={"format": "pt"})
    settings = {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head", "*mlp.gate"]}
    config = json.loads((target / "config.json").read_text())
    if in_config:
        config["quantization_config"] = {"quant_method": "modelopt", **settings}
    else:
        hf_quant = {"producer": {"name": "modelopt"}, "quantization": settings}
        (target / "hf_quant_config.json").write_text(json.dumps(hf_quant))
    (target / "config.json").write_text(json.dumps(config))
    return rounded


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _cfg(model_dir: Path, tmp_path: Path, **keys) -> TrainConfig:
    return TrainConfig.model_validate(
        {"base_model": str(model_dir), "output_dir": str(tmp_path / "out"), "datasets": [{"path": "x.jsonl"}], **keys}
    )


def test_dequantize_matches_torchao_bit_for_bit():
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    weight = torch.randn(3, 8, 64) * 0.05
    scale = per_tensor_amax_to_scale(weight.abs().max())
    nvfp4 = NVFP4Tensor.to_nvfp4(weight, per_tensor_scale=scale)
    ours = dequantize_nvfp4(nvfp4.qdata, nvfp4.scale, scale, torch.float32)
    assert torch.equal(ours, nvfp4.dequantize(torch.float32))
    assert not torch.equal(ours, weight)  # it is the rounded weight, not the original


def test_llama_nvfp4_checkpoint_loads_dequantised_and_cached(tmp_path, hf_home, caplog):
    plain = tmp_path / "plain"
    make_tiny_model(plain)
    rounded = quantize_to_modelopt(plain, tmp_path / "nvfp4", in_config=False)
    cfg = _cfg(tmp_path / "nvfp4", tmp_path)
    tokenizer = load_tokenizer(cfg)
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        model = load_model(cfg, tokenizer, Precision())
    weights = dict(model.named_parameters())
    assert len(rounded) == 7 * model.config.num_hidden_layers
    for name, expected in rounded.items():
        assert torch.equal(weights[name], expected), name
    (copy,) = (hf_home / "hpcft-dequantized").iterdir()
    assert "writing a dequantised float32 copy" in caplog.text and str(copy) in caplog.text
    scales = json.loads((copy / SCALES_FILE).read_text())
    assert set(scales) == {n.removesuffix(".weight") for n in rounded}
    assert "quantization_config" not in json.loads((copy / "config.json").read_text())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        load_model(cfg, tokenizer, Precision())
    assert f"using the dequantised copy of {tmp_path / 'nvfp4'} in {copy}" in caplog.text


def test_qwen3_moe_nvfp4_checkpoint_trains_lora_on_experts(tmp_path, hf_home):
    from transformers import AutoConfig, AutoModelForCausalLM

    plain = tmp_path / "plain"
    tokenizer = make_tiny_tokenizer(plain)
    config = AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=4,
        num_experts_per_tok=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(plain))
    rounded = quantize_to_modelopt(plain, tmp_path / "nvfp4", in_config=True)
    cfg = _cfg(
        tmp_path / "nvfp4",
        tmp_path,
        adapter="lora",
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        lora_target_parameters=["experts.gate_up_proj", "experts.down_proj"],
    )
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    experts = model.base_model.model.model.layers[1].mlp.experts
    experts = experts.get_base_layer() if hasattr(experts, "get_base_layer") else experts
    prefix = "model.layers.1.mlp.experts"
    for e in range(4):  # transformers fuses the per-expert NVFP4 tensors into [E, 2I, H] / [E, H, I] as usual
        gate_up = torch.cat([rounded[f"{prefix}.{e}.gate_proj.weight"], rounded[f"{prefix}.{e}.up_proj.weight"]])
        assert torch.equal(experts.gate_up_proj[e], gate_up)
        assert torch.equal(experts.down_proj[e], rounded[f"{prefix}.{e}.down_proj.weight"])
    router = model.base_model.model.model.layers[1].mlp.gate.weight
    with safe_open(str(plain / "model.safetensors"), framework="pt") as f:
        assert torch.equal(router, f.get_tensor("model.layers.1.mlp.gate.weight"))  # excluded: kept as it was

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any("experts" in n and "lora" in n for n, _ in model.named_parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = tokenizer(["user\nWhat is two plus two?\nassistant\ntwo plus two is four."], return_tensors="pt")
    losses = []
    for _ in range(2):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[1] < losses[0]
