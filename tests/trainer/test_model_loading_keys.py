"""axolotl's model-loading keys on the tiny model (one process, CPU): pure half precision (float16/bfloat16),
resize_token_embeddings_to_32x, reinit_weights, model_quantization_config, use_onebitllms."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from safetensors.torch import load_file, save_file

from hpcft.core.features.model_loading import QUANTIZATION_CONFIG_KWARGS
from hpcft.trainer.loop.args import Precision, resolve_precision, training_arguments
from hpcft.trainer.model.bitnet import bitnet_linear_layers
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.model.quantized_checkpoints import checkpoint_quantization
from hpcft.trainer.reporting.metrics import METRICS_FILE


def test_float16_loads_and_trains_fp16_weights_without_mixed_precision(train_config, tmp_path):
    cfg = train_config(float16=True, bf16=False)
    precision = resolve_precision(cfg, bf16_supported=True)
    assert precision == Precision(dtype=torch.float16)  # no AMP: neither bf16 nor fp16 autocast
    args = training_arguments(cfg, precision, None, num_train_rows=8, has_eval=False, world_size=1)
    assert not args.fp16 and not args.bf16
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, precision)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    # One optimizer step in fp16 changes the fp16 weights (nothing is kept in fp32).
    before = model.lm_head.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-1)
    batch = tokenizer(["two plus three is five"], return_tensors="pt")
    loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert model.lm_head.weight.dtype == torch.float16 and not torch.equal(before, model.lm_head.weight)
    # Under DeepSpeed (hpcft's default) there is no pure fp16: its fp16 mode on GPUs, fp32 on CPU (no fp16 there).
    assert resolve_precision(cfg, deepspeed=True, cuda=True) == Precision(fp16=True, dtype=torch.float16)
    assert resolve_precision(cfg, deepspeed=True, cuda=False) == Precision()
    bf16 = resolve_precision(train_config(bfloat16=True), bf16_supported=False)
    assert bf16.bf16 and bf16.dtype == torch.bfloat16


def test_resize_token_embeddings_to_32x_rounds_the_new_size_up(train_config):
    cfg = train_config(tokens=["<tool_call>", "</tool_call>"], resize_token_embeddings_to_32x=True)
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    rows = model.get_input_embeddings().num_embeddings
    assert rows % 32 == 0 and len(tokenizer) <= rows < len(tokenizer) + 32
    assert model.get_output_embeddings().weight.shape[0] == rows
    plain = train_config(tokens=["<tool_call>", "</tool_call>"])
    assert load_model(plain, load_tokenizer(plain), Precision()).get_input_embeddings().num_embeddings == len(tokenizer)


def test_reinit_weights_builds_the_architecture_with_seeded_random_weights(train_config, tiny_model):
    cfg = train_config(reinit_weights=True, seed=3)
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    again = load_model(cfg, tokenizer, Precision())
    other_seed = load_model(train_config(reinit_weights=True, seed=4), tokenizer, Precision())
    pretrained = dict(tiny_model.named_parameters())
    weights = dict(model.named_parameters())
    assert weights.keys() == pretrained.keys() and type(model) is type(tiny_model)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[name], pretrained[name])  # not the checkpoint's weights
    assert torch.equal(weights[name], dict(again.named_parameters())[name])  # the seed decides them
    assert not torch.equal(weights[name], dict(other_seed.named_parameters())[name])


def test_quantization_config_classes_and_arguments_match_transformers(train_config):
    for name, kwargs in QUANTIZATION_CONFIG_KWARGS.items():
        params = set(inspect.signature(getattr(transformers, name).__init__).parameters) - {"self", "kwargs"}
        assert kwargs == params, name
    cfg = train_config(model_quantization_config="Mxfp4Config", model_quantization_config_kwargs={"dequantize": True})
    built = checkpoint_quantization(cfg)["quantization_config"]
    assert isinstance(built, transformers.Mxfp4Config) and built.dequantize is True
    assert checkpoint_quantization(train_config()) == {}
    fp8 = train_config(
        model_quantization_config="FineGrainedFP8Config",
        model_quantization_config_kwargs={"weight_block_size": [64, 64], "dequantize": True},
    )
    assert checkpoint_quantization(fp8)["quantization_config"].weight_block_size == [64, 64]


def test_onebitllms_on_cpu_trains_the_ordinary_layers_and_says_so(train_config, tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        assert bitnet_linear_layers(tiny_model, cuda=False) is tiny_model
    assert "use_onebitllms: onebitllms' BitNet layers need a CUDA GPU" in caplog.text
    assert "there is no CUDA GPU" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        bitnet_linear_layers(tiny_model, cuda=True, installed=False)
    assert "the onebitllms package is not installed" in caplog.text
    assert all(type(m) is torch.nn.Linear for n, m in tiny_model.named_modules() if n.endswith("q_proj"))


@pytest.mark.slow
def test_float16_from_scratch_trains_in_pure_fp16_through_the_trainer(train_config, tmp_path):
    """axolotl's pretraining and float16 examples in one run of the trainer without DeepSpeed (as FSDP runs on
    GPUs): a random model in fp16, AdamW on fp16 weights (epsilon 1e-4: 1e-8 is 0 in fp16), saved in fp16."""
    cfg = train_config(
        float16=True,
        bf16=False,
        reinit_weights=True,
        adam_epsilon=1e-4,
        sequence_len=128,
        sample_packing=True,
        micro_batch_size=2,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    result = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reinit_weights: building" in result.stderr
    metrics = [json.loads(line) for line in (Path(cfg.output_dir) / METRICS_FILE).read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert losses[-1] < losses[0]
    assert json.loads((Path(cfg.output_dir) / "config.json").read_text())["dtype"] == "float16"


def test_base_model_ignore_patterns_downloads_the_hub_model_without_those_files(tiny_model_dir, tmp_path):
    """A Hub base_model is fetched with snapshot_download(ignore_patterns=...) and loaded from that snapshot (here the
    Hub is unreachable, so the snapshot comes from a prepared cache); a local folder is read as it is."""
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    script = (
        "from hpcft.core.schema import TrainConfig\n"
        "from hpcft.trainer.model.loading import model_source\n"
        f"for model in ('org/tiny', {str(tiny_model_dir)!r}):\n"
        "    cfg = TrainConfig.model_validate({'base_model': model, 'base_model_ignore_patterns': 'pytorch*',"
        " 'datasets': [{'path': 'd'}]})\n"
        "    print(model_source(cfg))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(snapshot), str(tiny_model_dir)]


FP4_VALUES = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def test_mxfp4_checkpoint_is_dequantized_into_a_trainable_model(train_config, tiny_model_dir, tiny_tokenizer, tmp_path):
    """gpt-oss's examples: a pre-quantised MXFP4 checkpoint (its experts as 4-bit values in blocks of 32 with a
    shared power-of-two scale, lowest nibble first) loads through model_quantization_config: Mxfp4Config with
    dequantize: true as exactly those values, with no quantiser left on the model (a full fine-tune can train it)."""
    folder = tmp_path / "gpt-oss"
    vocab = len(tiny_tokenizer)
    shapes = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, head_dim=16)
    config = transformers.AutoConfig.for_model(
        "gpt_oss", vocab_size=vocab, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, **shapes
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    weights = load_file(str(folder / "model.safetensors"))
    generator = torch.Generator().manual_seed(1)
    expected = {}
    for name in [n for n in weights if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        experts, rows, columns = weights.pop(name).shape  # stored (experts, in, out); blocks run along `in`
        blocks = torch.randint(0, 256, (experts, columns, rows // 32, 16), generator=generator, dtype=torch.uint8)
        scales = torch.randint(124, 130, (experts, columns, rows // 32), generator=generator).to(torch.uint8)
        values = torch.stack([FP4_VALUES[(blocks & 0xF).long()], FP4_VALUES[(blocks >> 4).long()]], dim=-1)
        values = values.reshape(experts, columns, rows // 32, 32) * 2.0 ** (scales.float() - 127).unsqueeze(-1)
        expected[name] = values.reshape(experts, columns, rows).transpose(1, 2)
        weights[f"{name}_blocks"], weights[f"{name}_scales"] = blocks, scales
    save_file(weights, str(folder / "model.safetensors"))
    saved = json.loads((folder / "config.json").read_text())
    unquantised = ["self_attn", "router", "lm_head"]
    saved["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": unquantised}
    (folder / "config.json").write_text(json.dumps(saved))
    cfg = train_config(
        base_model=str(folder),
        model_quantization_config="Mxfp4Config",
        model_quantization_config_kwargs={"dequantize": True},
    )
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    parameters = dict(model.named_parameters())
    for name, values in expected.items():
        assert torch.equal(parameters[name], values), name
    assert all(p.requires_grad for p in parameters.values())
