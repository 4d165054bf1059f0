"""fp8 on the tiny model: load_model turns its linear layers into torchao's Float8Linear (torch runs float8
matmuls on CPU too), keeps the output head and MoE routers in high precision, trains, and on GPUs older than
sm_89 warns and leaves the model as it is."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.fp8 import Float8AllGatherScales, apply_fp8, converts_to_float8, float8_config, fp8_callbacks
from hpcft.trainer.model.loading import load_model, load_tokenizer


def test_load_model_trains_the_linear_layers_in_float8(train_config, tiny_model, caplog):
    from torchao.float8.float8_linear import Float8Linear

    cfg = train_config(fp8=True)
    with caplog.at_level(logging.INFO, logger="hpcft.trainer"):
        model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert "fp8: 14 linear layers train with torchao float8 matmuls (CPU: float8 numerics, no speed-up)" in caplog.text
    assert isinstance(model.model.layers[1].mlp.down_proj, Float8Linear)
    assert type(model.lm_head) is nn.Linear  # the output head stays in high precision
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]])
    out = model(ids, labels=ids)
    out.loss.backward()
    with torch.no_grad():
        plain = tiny_model(ids, labels=ids).loss
    # float8 rounding moves the loss a little, not a lot
    assert out.loss.item() != plain.item() and out.loss.item() == pytest.approx(plain.item(), rel=0.05)
    assert model.model.layers[1].mlp.down_proj.weight.grad.abs().sum() > 0
    assert model.model.layers[1].mlp.down_proj.weight.dtype == torch.float32  # the weights stay high precision


def test_an_older_gpu_warns_and_trains_without_fp8(train_config, tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        assert apply_fp8(train_config(fp8=True), tiny_model, cuda_capability=(8, 0)) == 0
    assert "fp8: this GPU is sm_80; float8 matrix multiplies need sm_89 or newer" in caplog.text
    assert {type(m) for m in tiny_model.modules() if isinstance(m, nn.Linear)} == {nn.Linear}


def test_float8_all_gather_only_under_fsdp2(train_config):
    cfg = train_config(
        fp8=True,
        fp8_enable_fsdp_float8_all_gather=True,
        fsdp_version=2,
        fsdp_config={"reshard_after_forward": True},
    )
    assert float8_config(cfg, fsdp=True).enable_fsdp_float8_all_gather is True
    assert float8_config(cfg, fsdp=False).enable_fsdp_float8_all_gather is False  # CPU: FSDP runs as ZeRO
    assert [type(c) for c in fp8_callbacks(cfg, fsdp=True)] == [Float8AllGatherScales]
    assert fp8_callbacks(cfg, fsdp=False) == []


def test_routers_heads_and_odd_sizes_stay_in_high_precision():
    head = nn.Linear(64, 128)
    assert converts_to_float8(nn.Linear(64, 128), "model.layers.0.mlp.up_proj", head)
    assert not converts_to_float8(head, "lm_head", head)
    assert not converts_to_float8(nn.Linear(64, 8), "model.layers.0.mlp.gate", head)  # MoE router
    assert not converts_to_float8(nn.Linear(64, 8), "model.layers.0.block_sparse_moe.router", head)
    assert converts_to_float8(nn.Linear(64, 128), "model.layers.0.mlp.gate_proj", head)
    assert not converts_to_float8(nn.Linear(60, 128), "model.layers.0.mlp.up_proj", head)
