"""gptq: a LoRA adapter on a GPTQ checkpoint. Without CUDA and gptqmodel the GPTQ layers are unpacked to ordinary
weights; the test writes a tiny GPTQ checkpoint in GPTQ's own layout (AutoGPTQ's packing: 4-bit values packed
along the input rows of qweight and the output columns of qzeros, lowest bits first, zero points stored minus one)
from known integers and scales, and checks that training sees exactly scale * (q - zero)."""

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
from safetensors.torch import load_file, save_file

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job
from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.loading import load_model, load_tokenizer

BITS, GROUP = 4, 16
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _int32(values: torch.Tensor) -> torch.Tensor:
    return ((values + 2**31) % 2**32 - 2**31).to(torch.int32)  # the uint32 words as signed int32, as stored


def _pack(values: torch.Tensor, dim: int) -> torch.Tensor:
    per = 32 // BITS
    values = values.to(torch.int64)
    if dim == 0:
        words = sum(values[j::per] << (BITS * j) for j in range(per))
    else:
        words = sum(values[:, j::per] << (BITS * j) for j in range(per))
    return _int32(words)


@pytest.fixture(scope="module")
def gptq_checkpoint(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny model whose linear layers are GPTQ layers; returns (folder, {layer: expected weight})."""
    folder = tmp_path_factory.mktemp("tiny-gptq")
    for item in tiny_model_dir.iterdir():
        shutil.copy(item, folder / item.name)
    weights = load_file(str(folder / "model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    expected = {}
    for name in [n for n in weights if n.rsplit(".", 2)[-2] in LINEAR]:
        out_features, in_features = weights.pop(name).shape
        prefix = name.removesuffix(".weight")
        groups = in_features // GROUP
        q = torch.randint(0, 16, (in_features, out_features), generator=generator)
        zeros = torch.randint(4, 12, (groups, out_features), generator=generator)
        scales = (torch.rand(groups, out_features, generator=generator) * 0.02 + 0.001).half()
        g_idx = torch.randperm(in_features, generator=generator) // GROUP  # act-order checkpoints shuffle groups
        weights[f"{prefix}.qweight"] = _pack(q, dim=0)
        weights[f"{prefix}.qzeros"] = _pack(zeros - 1, dim=1)  # GPTQ's v1 format stores zero - 1
        weights[f"{prefix}.scales"] = scales
        weights[f"{prefix}.g_idx"] = g_idx.to(torch.int32)
        weights[f"{prefix}.bias"] = torch.zeros(out_features, dtype=torch.float16)  # GPTQ layers always carry one
        expected[name] = (scales.float()[g_idx] * (q - zeros[g_idx]).float()).t()
    save_file(weights, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "gptq",
        "bits": BITS,
        "group_size": GROUP,
        "desc_act": True,
        "sym": False,
        "checkpoint_format": "gptq",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder, expected


def test_gptq_layers_are_unpacked_and_the_adapter_trains_on_them(train_config, gptq_checkpoint, caplog):
    folder, expected = gptq_checkpoint
    cfg = train_config(base_model=str(folder), gptq=True, adapter="lora", lora_target_modules=["q_proj", "v_proj"])
    tokenizer = load_tokenizer(cfg)
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        model = load_model(cfg, tokenizer, Precision())
    assert "gptq: GPTQ kernels need a CUDA GPU and the gptqmodel package, but there is no CUDA GPU" in caplog.text
    assert "gptq: 14 GPTQ layers" in caplog.text
    base = dict(model.get_base_model().named_parameters())
    for name, weight in expected.items():
        key = name
        for adapted in ("q_proj", "v_proj"):  # LoRA wraps these: their weight is the base layer's
            key = key.replace(f"{adapted}.weight", f"{adapted}.base_layer.weight")
        assert torch.equal(base[key], weight), name
    assert not any(n.endswith("proj.bias") for n in base)  # the zero biases of GPTQ layers are not the model's
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in dict(model.named_parameters()) if "lora_" in n
    }
    batch = tokenizer(["two plus three is five"], return_tensors="pt")
    loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_gptq_needs_a_gptq_checkpoint(tiny_model_dir, tmp_path, chat_dataset):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        json.dumps(
            {
                "base_model": str(tiny_model_dir),
                "gptq": True,
                "adapter": "lora",
                "lora_target_linear": True,
                "datasets": [chat_dataset],
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    with pytest.raises(ConfigError, match="gptq: true, but .*config.json has no GPTQ quantization_config"):
        load_job(config, "local")


@pytest.mark.slow
def test_gptq_lora_trains_under_zero3_as_the_launcher_runs_it(train_config, gptq_checkpoint, tmp_path):
    """LoRA's default DeepSpeed preset is ZeRO-3, whose partitioned loading the unpacked weights go through."""
    folder, _ = gptq_checkpoint
    cfg = train_config(
        base_model=str(folder),
        gptq=True,
        adapter="lora",
        lora_target_modules=["q_proj", "v_proj"],
        deepspeed="zero3",
        sequence_len=128,
        sample_packing=True,
        micro_batch_size=2,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    result = subprocess.run(
        [*command, "-m", "hpcft.trainer", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gptq: 14 GPTQ layers" in result.stderr
    assert (Path(cfg.output_dir) / "adapter_config.json").is_file()
