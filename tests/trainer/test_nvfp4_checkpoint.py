"""NVFP4 (ModelOpt) base checkpoints: a tiny random Llama and Qwen3-MoE are quantised to the ModelOpt NVFP4 layout
with torchao's NVFP4 quantiser (uint8 e2m1 pairs, float8_e4m3fn block scales, float32 weight_scale_2), saved under
the same names and config as NVIDIA's releases, then loaded through load_model: the weights must equal torchao's
dequantisation exactly, the copy is cached and reused, and LoRA (on modules and on expert parameters) trains."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.args import Precision
from hpcft.trainer.merge_lora import merge_lora
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.model.nvfp4_checkpoint import SCALES_FILE, dequantize_fp8, dequantize_nvfp4, write_dequantized
from hpcft.trainer.model.nvfp4_merge_aware import (
    MergeAwareStartCallback,
    Nvfp4MergeAwareExperts,
    Nvfp4MergeAwareLinear,
    nvfp4_snap,
    set_snapping,
    start_step,
)
from hpcft.trainer.tiny import make_nvfp4_copy, make_tiny_model, make_tiny_moe


def quantize_to_modelopt(source: Path, target: Path, in_config: bool) -> dict[str, torch.Tensor]:
    rounded = make_nvfp4_copy(source, target, in_config)
    assert rounded and all(not n.endswith("mlp.gate.weight") for n in rounded)
    with safe_open(str(target / "model.safetensors"), framework="pt") as f:
        name = next(iter(rounded))
        assert f.get_tensor(name).dtype == torch.uint8
        assert f.get_tensor(name.replace(".weight", ".weight_scale")).dtype == torch.float8_e4m3fn
    return rounded


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _cfg(model_dir: Path, tmp_path: Path, **keys) -> TrainConfig:
    keys.setdefault("datasets", [{"path": "x.jsonl"}])
    return TrainConfig.model_validate({"base_model": str(model_dir), "output_dir": str(tmp_path / "out"), **keys})


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
    cfg = _cfg(tmp_path / "nvfp4", tmp_path, adapter="lora", lora_target_linear=True)
    tokenizer = load_tokenizer(cfg)
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        model = load_model(cfg, tokenizer, Precision())
    weights = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in model.named_parameters()}
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


def make_nvfp4_moe(tmp_path: Path) -> dict[str, torch.Tensor]:
    """A tiny random 2-layer Qwen3-MoE (4 experts) saved in the ModelOpt NVFP4 layout to tmp_path/nvfp4."""
    plain = tmp_path / "plain"
    make_tiny_moe(plain)
    return quantize_to_modelopt(plain, tmp_path / "nvfp4", in_config=True)


MOE_LORA = {
    "adapter": "lora",
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "lora_target_parameters": ["experts.gate_up_proj", "experts.down_proj"],
}


def test_dequantize_fp8_per_tensor_and_in_blocks():
    weight = (torch.randn(200, 256) * 3).to(torch.float8_e4m3fn)
    blocks = torch.tensor([[0.5, 2.0], [4.0, 0.25]])  # DeepSeek's weight_scale_inv: one per 128 x 128 block
    out = dequantize_fp8(weight, blocks, torch.float32)
    plain = weight.float()
    assert torch.equal(out[:128, :128], plain[:128, :128] * 0.5) and torch.equal(out[:128, 128:], plain[:128, 128:] * 2)
    assert torch.equal(out[128:, :128], plain[128:, :128] * 4) and torch.equal(out[128:, 128:], plain[128:, 128:] / 4)
    assert torch.equal(dequantize_fp8(weight, torch.tensor(0.5), torch.float32), plain * 0.5)


def test_mixed_precision_checkpoint_in_shards(tmp_path, hf_home):
    """NVIDIA's DeepSeek/GLM releases: quant_algo MIXED_PRECISION, NVFP4 experts/MLP and block-FP8 elsewhere, in
    several shards where a weight and its scales may sit in different files."""
    plain = tmp_path / "plain"
    make_tiny_model(plain)
    rounded = quantize_to_modelopt(plain, tmp_path / "nvfp4", in_config=True)
    folder = tmp_path / "nvfp4"
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    expected = {}
    for name in [n for n in tensors if n.endswith("self_attn.q_proj.weight")]:
        base = name.removesuffix(".weight")
        expected[name] = torch.randn(64, 64).to(torch.float8_e4m3fn)
        tensors[name] = expected[name]
        tensors[f"{base}.weight_scale_inv"] = torch.tensor([[0.01]])
        for leaf in ("weight_scale", "weight_scale_2", "input_scale"):
            del tensors[f"{base}.{leaf}"]
        rounded.pop(name)
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {n: f"model-0000{i % 2 + 1}-of-00002.safetensors" for i, n in enumerate(names)}
    for shard in set(weight_map.values()):
        part = {n: tensors[n] for n in names if weight_map[n] == shard}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "quant_algo": "MIXED_PRECISION", "moe_quant_algo": "NVFP4"}
    (folder / "config.json").write_text(json.dumps(config))
    assert any(weight_map[f"{n[:-7]}.weight_scale"] != weight_map[n] for n in rounded)  # scales in the other shard

    write_dequantized(folder, tmp_path / "small-shards", torch.float32, shard_bytes=40_000)
    index = json.loads((tmp_path / "small-shards" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3  # never more than about shard_bytes held in memory
    assert not any(n.endswith(("_scale", "_scale_2", "_scale_inv")) for n in index["weight_map"])

    cfg = _cfg(folder, tmp_path, adapter="lora", lora_target_modules=["q_proj"])
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    weights = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in model.named_parameters()}
    for name, value in rounded.items():
        assert torch.equal(weights[name], value), name
    for name, value in expected.items():
        assert torch.equal(weights[name], value.float() * 0.01), name


def test_qwen3_moe_nvfp4_checkpoint_trains_lora_on_experts(tmp_path, hf_home):
    plain = tmp_path / "plain"
    rounded = make_nvfp4_moe(tmp_path)
    cfg = _cfg(tmp_path / "nvfp4", tmp_path, **MOE_LORA)
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

    assert any("experts" in n and "lora" in n for n, _ in model.named_parameters())
    losses = _train(model, tokenizer, steps=2)
    assert losses[1] < losses[0]


def _train(model, tokenizer, steps: int) -> list[float]:
    """steps AdamW steps on one batch; every trainable parameter must get a gradient."""
    model.train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=1e-2)
    batch = tokenizer(["user\nWhat is two plus two?\nassistant\ntwo plus two is four."], return_tensors="pt")
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        assert [n for n, p in trainable if p.grad is None] == []
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_nvfp4_snap_matches_torchao_and_takes_a_scale_per_row():
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    weight = torch.randn(8, 64) * 0.05
    scale = per_tensor_amax_to_scale(weight.abs().max())
    expected = NVFP4Tensor.to_nvfp4(weight, per_tensor_scale=scale).dequantize(torch.float32)
    assert torch.equal(nvfp4_snap(weight, scale), expected)
    assert torch.equal(nvfp4_snap(expected, scale), expected)  # on the grid already: unchanged
    rows = torch.cat([torch.full((4, 1), float(scale)), torch.full((4, 1), float(scale) * 2)])
    halves = [NVFP4Tensor.to_nvfp4(weight[i : i + 4], per_tensor_scale=rows[i, 0]) for i in (0, 4)]
    assert torch.equal(nvfp4_snap(weight, rows), torch.cat([h.dequantize(torch.float32) for h in halves]))


def test_merge_aware_lora_computes_with_the_snapped_merged_weight(tmp_path, hf_home):
    make_nvfp4_moe(tmp_path)
    cfg = _cfg(tmp_path / "nvfp4", tmp_path, nvfp4_merge_aware=True, **MOE_LORA)
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    layer = model.base_model.model.model.layers[1]
    q_proj = layer.self_attn.q_proj
    assert isinstance(q_proj, Nvfp4MergeAwareLinear) and q_proj.get_base_layer().nvfp4_tensor_scale > 0
    losses = _train(model, tokenizer, steps=2)  # moves B away from zero: the update is now visible
    assert losses[1] < losses[0]

    model.eval()
    x = torch.randn(3, 64)
    base = q_proj.get_base_layer()
    lora_a, lora_b = q_proj.lora_A["default"].weight, q_proj.lora_B["default"].weight
    merged = base.weight + (lora_b @ lora_a) * q_proj.scaling["default"]
    snapped = nvfp4_snap(merged, torch.tensor(base.nvfp4_tensor_scale))
    assert not torch.equal(snapped, merged)
    assert torch.equal(q_proj(x), torch.nn.functional.linear(x, snapped))
    set_snapping(model, False)  # before nvfp4_merge_aware_start_step: peft's own LoRA forward
    assert torch.allclose(q_proj(x), torch.nn.functional.linear(x, merged), atol=1e-6)
    set_snapping(model, True)

    wrappers = [m for m in model.modules() if isinstance(m, Nvfp4MergeAwareExperts)]
    assert {w.parameter_name for w in wrappers} == {"gate_up_proj", "down_proj"} and len(wrappers) == 4
    for wrapper in wrappers:
        experts = wrapper.get_base_layer()
        plain = getattr(experts, wrapper.parameter_name).detach().clone()
        delta = wrapper.get_delta_weight("default")
        assert delta.abs().max() > 0
        with wrapper._activate_lora(["default"]):
            seen = getattr(experts, wrapper.parameter_name)
        scales = experts.nvfp4_tensor_scales[wrapper.parameter_name]
        assert scales.shape == (*plain.shape[:2], 1)
        assert torch.equal(seen, nvfp4_snap(plain + delta, scales))


def test_merge_aware_start_step():
    from types import SimpleNamespace

    model = torch.nn.Module()
    model.layer = Nvfp4MergeAwareLinear.__new__(Nvfp4MergeAwareLinear)
    torch.nn.Module.__init__(model.layer)
    callback = MergeAwareStartCallback(0.5)
    callback.on_step_begin(None, SimpleNamespace(global_step=4, max_steps=10), None, model=model)
    assert model.layer.snapping is False
    callback.on_step_begin(None, SimpleNamespace(global_step=5, max_steps=10), None, model=model)
    assert model.layer.snapping is True
    assert start_step(3, 10) == 3 and start_step(None, 10) == 0


def test_merge_aware_on_a_base_that_is_not_nvfp4_is_refused(tmp_path, tiny_model_dir):
    cfg = _cfg(tiny_model_dir, tmp_path, nvfp4_merge_aware=True, adapter="lora", lora_target_modules=["q_proj"])
    with pytest.raises(ConfigError, match="nvfp4_merge_aware: base_model .* is not an NVFP4"):
        load_model(cfg, load_tokenizer(cfg), Precision())


def test_merge_lora_of_a_merge_aware_adapter_computes_what_was_trained(tmp_path, hf_home):
    from transformers import AutoModelForCausalLM

    make_nvfp4_moe(tmp_path)
    cfg = _cfg(tmp_path / "nvfp4", tmp_path, nvfp4_merge_aware=True, **MOE_LORA)
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    _train(model, tokenizer, steps=2)
    model.save_pretrained(cfg.output_dir)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    merged = AutoModelForCausalLM.from_pretrained(merge_lora(config))
    batch = tokenizer(["user\nHow many legs has a cat?\nassistant\nfour."], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        trained, plain = model(**batch).logits, merged(**batch).logits
        set_snapping(model, False)
        unsnapped = model(**batch).logits
    torch.testing.assert_close(plain, trained, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unsnapped, trained, rtol=1e-5, atol=1e-5)  # the snapping is visible in the output

    # lora_model_dir: training goes on with the same merge-aware layers and the trained weights.
    again = load_model(cfg.model_copy(update={"lora_model_dir": cfg.output_dir}), tokenizer, Precision())
    assert len([m for m in again.modules() if isinstance(m, (Nvfp4MergeAwareLinear, Nvfp4MergeAwareExperts))]) == 12
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, trained)


def test_full_fine_tuning_of_an_nvfp4_base_is_refused_before_the_copy(tmp_path, hf_home):
    plain = tmp_path / "plain"
    make_tiny_model(plain)
    quantize_to_modelopt(plain, tmp_path / "nvfp4", in_config=True)
    cfg = _cfg(tmp_path / "nvfp4", tmp_path)
    with pytest.raises(ConfigError, match="is an NVFP4 \\(ModelOpt\\) checkpoint, which is trained through a LoRA"):
        load_model(cfg, load_tokenizer(cfg), Precision())
    assert not (hf_home / "hpcft-dequantized").exists()


def test_trainer_switches_merge_aware_on_at_the_start_step(tmp_path, hf_home, caplog):
    from hpcft.trainer.loop.elastic import BatchLayout
    from hpcft.trainer.train import build_trainer

    from .conftest import CHAT_DATASET

    make_nvfp4_moe(tmp_path)
    cfg = _cfg(
        tmp_path / "nvfp4",
        tmp_path,
        datasets=[CHAT_DATASET],
        dataset_prepared_path=str(tmp_path / "prepared"),
        sequence_len=128,
        max_steps=2,
        nvfp4_merge_aware=True,
        nvfp4_merge_aware_start_step=1,
        **MOE_LORA,
    )
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg), BatchLayout(1, 1, 1))
    seen = []
    q_proj = trainer.model.base_model.model.model.layers[0].self_attn.q_proj
    q_proj.register_forward_pre_hook(lambda module, args: seen.append(module.snapping))
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        trainer.train()
    assert seen == [False, True]  # step 0 trains plain LoRA, step 1 on the snapped merge
    assert "with the NVFP4-snapped merged weight from step 1" in caplog.text


def _hub_cache_entry(hf_home: Path, repo: str, files_from: Path) -> Path:
    """A model in the Hugging Face cache as huggingface_hub lays it out (refs/main -> snapshots/<commit>/)."""
    entry = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(files_from, entry / "snapshots" / commit)
    return entry / "snapshots" / commit


def test_hub_nvfp4_model_is_found_and_dequantised_on_the_node(tmp_path, hf_home):
    plain = tmp_path / "plain"
    make_tiny_model(plain)
    make_nvfp4_copy(plain, tmp_path / "nvfp4")
    _hub_cache_entry(hf_home, "nvidia/Tiny-NVFP4", tmp_path / "nvfp4")
    _hub_cache_entry(hf_home, "someone/Tiny-16bit", plain)
    script = (
        "import torch\n"
        "from hpcft.trainer.model.nvfp4_checkpoint import nvfp4_source\n"
        "print(nvfp4_source('nvidia/Tiny-NVFP4', None, torch.float32, 'lora'))\n"
        "print(nvfp4_source('someone/Tiny-16bit', None, torch.float32, 'lora'))\n"
    )
    # Offline, as on compute nodes without Internet access: the model is read from the cache.
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    copy, plain_source = proc.stdout.split()
    assert Path(copy).parent == hf_home / "hpcft-dequantized"
    assert Path(copy).name.startswith("nvidia--Tiny-NVFP4-float32-")
    assert plain_source == "None"  # an ordinary model loads as it is


@pytest.mark.slow
def test_merge_aware_under_zero3_on_two_processes(tmp_path, hf_home):
    """hpcft's default for LoRA on several GPUs: DeepSpeed ZeRO-3, whose partitioned base weights the merge-aware
    forward gathers itself; rank 0 writes the dequantised copy while rank 1 waits for it."""
    from .conftest import CHAT_DATASET

    make_nvfp4_moe(tmp_path)
    cfg = _cfg(
        tmp_path / "nvfp4",
        tmp_path,
        datasets=[CHAT_DATASET],
        dataset_prepared_path=str(tmp_path / "prepared"),
        deepspeed="zero3",
        sequence_len=128,
        max_steps=3,
        logging_steps=1,
        nvfp4_merge_aware=True,
        **MOE_LORA,
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "HF_HOME": str(hf_home), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*command, "-m", "hpcft.trainer", "train", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "nvfp4_merge_aware: 12 NVFP4 weights will be trained on their NVFP4 grid" in log  # 8 linear, 4 experts
    assert log.count("writing a dequantised float32 copy") == 1
    losses = [json.loads(line)["loss"] for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len([x for x in losses if x is not None]) == 3
