"""Quantization-aware training on the tiny model, with torchao's real fake-quantised layers on CPU: int8/int4 and
mxfp4 through torchao, NVFP4 through hpcft's emulation (torchao's NVFP4 layer needs a Blackwell GPU), the late
switch-on, the conversion back to plain layers, and one whole training run."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hpcft.core.features.qat import QatConfig
from hpcft.trainer.model.qat import (
    Nvfp4EmulatedLinear,
    QatSwitchCallback,
    _nvfp4_round,
    convert_qat,
    prepare_qat,
    torchao_qat_config,
)

from .test_train_single import PINNED_LOSSES, RUN, read_metrics, run_train, write_config

INT8_INT4 = QatConfig(activation_dtype="int8", weight_dtype="int4", group_size=32)


def _ids(tiny_tokenizer) -> torch.Tensor:
    return tiny_tokenizer("the sky is blue and the grass is green", return_tensors="pt").input_ids


def test_int8_int4_fake_quantises_every_linear_layer_to_int4_groups(tiny_model, tiny_tokenizer):
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    ids = _ids(tiny_tokenizer)
    with torch.no_grad():
        plain = tiny_model(ids).logits
    linears = sum(type(m) is nn.Linear for m in tiny_model.modules())
    prepare_qat(INT8_INT4, tiny_model, capability=None)
    fake = [m for m in tiny_model.modules() if isinstance(m, FakeQuantizedLinear)]
    assert len(fake) == linears and not any(type(m) is nn.Linear for m in tiny_model.modules())
    layer = tiny_model.model.layers[0].mlp.down_proj
    assert layer.activation_fake_quantizer is not None  # int8 activations (per token)
    seen = layer.weight_fake_quantizer(layer.weight.detach())
    groups = seen.reshape(-1, 32)
    # int4: at most 16 levels per group of 32, where the trained weights have 32 different values
    assert max(len(torch.unique(g)) for g in groups) <= 16 < len(torch.unique(layer.weight[0, :32]))
    with torch.no_grad():
        quantised = tiny_model(ids).logits
    assert not torch.equal(quantised, plain) and torch.allclose(quantised, plain, atol=0.5)


def test_fake_quantisation_is_off_before_fake_quant_after_n_steps(tiny_model, tiny_tokenizer):
    ids = _ids(tiny_tokenizer)
    with torch.no_grad():
        plain = tiny_model(ids).logits
    prepare_qat(QatConfig(activation_dtype="int8", weight_dtype="int4", fake_quant_after_n_steps=2), tiny_model, None)
    switch = QatSwitchCallback(2)
    logits = []
    for step in (0, 1, 2):
        switch.on_step_begin(None, SimpleNamespace(global_step=step), None, model=tiny_model)
        with torch.no_grad():
            logits.append(tiny_model(ids).logits)
    assert torch.equal(logits[0], plain) and torch.equal(logits[1], plain)
    assert not torch.equal(logits[2], plain)
    # a run resumed past the switch turns it on at its first step
    resumed = QatSwitchCallback(2)
    resumed.on_step_begin(None, SimpleNamespace(global_step=5), None, model=tiny_model)
    assert resumed.enabled is True


def test_convert_gives_back_plain_layers_with_the_same_weights(tiny_model):
    weight = tiny_model.model.layers[1].self_attn.q_proj.weight
    prepare_qat(INT8_INT4, tiny_model, None)
    convert_qat(tiny_model)
    assert tiny_model.model.layers[1].self_attn.q_proj.weight is weight
    assert {type(m) for m in tiny_model.modules() if isinstance(m, nn.Linear)} == {nn.Linear}
    assert not any("fake_quantizer" in name for name, _ in tiny_model.named_modules())


def test_nvfp4_without_blackwell_is_emulated_with_torchaos_nvfp4_rounding(tiny_model, tiny_tokenizer, caplog):
    from torchao.prototype.qat import NVFP4FakeQuantizeConfig

    qat = QatConfig(activation_dtype="nvfp4", weight_dtype="nvfp4", group_size=16)
    blackwell = torchao_qat_config(qat, (10, 0))
    assert isinstance(blackwell.weight_config, NVFP4FakeQuantizeConfig)
    assert isinstance(blackwell.activation_config, NVFP4FakeQuantizeConfig)
    assert torchao_qat_config(qat, (9, 0)) is None and torchao_qat_config(qat, None) is None

    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        prepare_qat(qat, tiny_model, capability=(9, 0))
    assert "qat: NVFP4 matrix multiplies need a Blackwell GPU (this GPU is sm_90); emulating them" in caplog.text
    layer = tiny_model.model.layers[0].self_attn.o_proj
    assert isinstance(layer, Nvfp4EmulatedLinear)
    rounded = _nvfp4_round(layer.weight.detach())
    assert max(len(torch.unique(block)) for block in rounded.reshape(-1, 16)) <= 15  # FP4 has 15 values
    # forward: the rounded inputs times the rounded weights; backward: straight through the rounding
    x = torch.randn(2, 3, 64, requires_grad=True)
    out = layer(x)
    assert torch.allclose(out, nn.functional.linear(_nvfp4_round(x), rounded), atol=1e-5)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.ones(2, 3, 64) @ rounded, atol=1e-5)
    assert torch.allclose(layer.weight.grad, torch.ones(64, 6) @ _nvfp4_round(x).reshape(6, 64), atol=1e-4)
    tiny_model(_ids(tiny_tokenizer)).logits.sum().backward()  # the whole model trains through it
    convert_qat(tiny_model)
    assert type(tiny_model.model.layers[0].self_attn.o_proj) is nn.Linear


def test_mxfp4_runs_through_torchaos_mx_layers_on_cpu(tiny_model, tiny_tokenizer):
    from torchao.prototype.qat import MXFakeQuantizedLinear

    prepare_qat(QatConfig(activation_dtype="mxfp4", weight_dtype="mxfp4", group_size=32), tiny_model, None)
    assert isinstance(tiny_model.model.layers[1].mlp.up_proj, MXFakeQuantizedLinear)
    loss = tiny_model(_ids(tiny_tokenizer), labels=_ids(tiny_tokenizer)).loss
    loss.backward()
    assert torch.isfinite(loss) and tiny_model.model.layers[1].mlp.up_proj.weight.grad.abs().sum() > 0


def test_quantize_embedding_fake_quantises_the_input_embeddings(tiny_model):
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding

    prepare_qat(QatConfig(weight_dtype="int4", group_size=32, quantize_embedding=True), tiny_model, None)
    assert isinstance(tiny_model.get_input_embeddings(), FakeQuantizedEmbedding)
    convert_qat(tiny_model)
    assert type(tiny_model.get_input_embeddings()) is nn.Embedding


def test_a_qat_run_switches_fake_quantisation_on_late_and_saves_a_plain_model(train_config, tmp_path):
    qat = {"activation_dtype": "int8", "weight_dtype": "int4", "group_size": 32, "fake_quant_after_n_steps": 1}
    cfg = train_config(**{**RUN, "max_steps": 3, "save_steps": None, "qat": qat})
    result = run_train(write_config(cfg, tmp_path / "train.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "qat: int8 dynamic activations (per token), int4 weights (per group), fake-quantised in 15 linear" in (
        result.stderr
    )
    assert "qat: fake quantisation off at step 0" in result.stderr
    assert "qat: fake quantisation on at step 1" in result.stderr
    losses = [m["loss"] for m in read_metrics(cfg.output_dir)]
    assert losses[0] == pytest.approx(PINNED_LOSSES[0], rel=1e-4)  # step 1 ran without fake quantisation
    assert losses[1] != pytest.approx(PINNED_LOSSES[1], rel=1e-4)  # from step 2 on, the rounding shows
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(f"{cfg.output_dir}/model.safetensors", "pt") as saved:
        assert not any("quantizer" in key for key in saved.keys())
    model = AutoModelForCausalLM.from_pretrained(cfg.output_dir)
    assert type(model.model.layers[0].mlp.gate_proj) is nn.Linear


@pytest.mark.slow
def test_axolotls_nvfp4_qat_example_trains_two_steps_with_a_tiny_gemma3(tmp_path, monkeypatch):
    """The compatibility matrix's 2-step run (bench/axolotl_examples.py) on axolotl's Gemma3 NVFP4 QAT config:
    FSDP2 runs as ZeRO-3 on CPU, NVFP4 is emulated without a Blackwell GPU."""
    import importlib.util
    import shutil
    import sys

    import yaml

    root = Path(__file__).resolve().parents[2]
    if "axolotl_examples" not in sys.modules:
        spec = importlib.util.spec_from_file_location("axolotl_examples", root / "bench" / "axolotl_examples.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    bench = sys.modules["axolotl_examples"]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "gemma3-qat-nvfp4.yaml"
    shutil.copy(root / "tests" / "data" / "axolotl_style" / config.name, config)
    outcome = bench.validate_one(config, config.name)
    assert outcome.result == "accepted", outcome.detail
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained" and detail.startswith("2 steps, loss "), detail
    run = tmp_path / "train" / "gemma3_qat_nvfp4_yaml"
    trained = yaml.safe_load((run / "train.yaml").read_text())
    assert (trained["qat"]["activation_dtype"], trained["qat"]["weight_dtype"]) == ("nvfp4", "nvfp4")
    assert (run / "out" / "model.safetensors").is_file()
