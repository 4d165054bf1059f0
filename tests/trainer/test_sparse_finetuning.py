"""Sparse fine-tuning on a 2:4-pruned tiny model: the recipe's targeted zeros stay zero through real training
steps while the other weights train, and an untargeted pruned layer fills in (the masks are what keeps them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hpcft.core.errors import ConfigError
from hpcft.trainer.model.sparse_finetuning import keep_sparsity, targeted_weights

from .test_train_single import RUN, run_train, write_config

PRUNED = ("q_proj", "k_proj", "down_proj")
TARGETS = ["re:.*q_proj.weight", "re:.*down_proj.weight"]  # k_proj is pruned but not targeted


def _keep(targets: list[str]) -> dict:
    modifier = {"ConstantPruningModifier": {"targets": targets, "start": 0}}
    return {"recipe": {"finetuning_stage": {"finetuning_modifiers": modifier}}, "save_compressed": True}


@pytest.fixture(scope="module")
def pruned_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with 2 of every 4 weights zeroed (the smallest) in its q_proj, k_proj and down_proj."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(tuple(f"{p}.weight" for p in PRUNED)):
                blocks = param.view(-1, 4)
                blocks.scatter_(1, blocks.abs().argsort(dim=1)[:, :2], 0.0)
    path = tmp_path_factory.mktemp("pruned")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def test_targeted_zeros_stay_zero_through_training(pruned_model_dir, train_config, tmp_path):
    cfg = train_config(
        **{**RUN, "max_steps": 4, "save_steps": 2, "base_model": str(pruned_model_dir)},
        llmcompressor=_keep(TARGETS),
        plugins=["axolotl.integrations.llm_compressor.LLMCompressorPlugin"],
    )
    result = run_train(write_config(cfg, tmp_path / "train.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "llmcompressor: keeping the zeros of 4 weights (50.0% of their entries are zero)" in result.stderr
    assert "llmcompressor.save_compressed: compressed-tensors has no sparse format" in result.stderr
    before = load_file(pruned_model_dir / "model.safetensors")
    for saved in (Path(cfg.output_dir) / "model.safetensors", Path(cfg.output_dir) / "checkpoint-2/model.safetensors"):
        after = load_file(saved)
        for layer in (0, 1):
            for proj, targeted in (("self_attn.q_proj", True), ("mlp.down_proj", True), ("self_attn.k_proj", False)):
                key = f"model.layers.{layer}.{proj}.weight"
                zeros = before[key] == 0
                assert int(zeros.sum()) == before[key].numel() // 2
                kept = int((after[key][zeros] == 0).sum())
                # targeted: every zero kept; untargeted: training fills them in
                assert kept == int(zeros.sum()) if targeted else kept < int(zeros.sum()) // 10, (saved, key)
                assert not torch.equal(after[key][~zeros], before[key][~zeros])  # the rest trains


def test_targets_name_weights_as_llmcompressor_does(tiny_model):
    names = lambda targets: sorted(targeted_weights(tiny_model, targets))  # noqa: E731
    assert names(["re:.*layers.0.*q_proj.weight"]) == ["model.layers.0.self_attn.q_proj.weight"]
    assert names(["model.layers.1.mlp.up_proj"]) == ["model.layers.1.mlp.up_proj.weight"]  # a layer: its weight
    assert names(["model.norm.weight"]) == ["model.norm.weight"]  # an exact parameter name
    assert len(names(["__ALL_PRUNABLE__"])) == 15  # every linear layer's weight, the output head included
    assert names(["re:.*no_such_layer"]) == []


def test_targets_that_match_nothing_fail_before_training(train_config, tiny_model):
    cfg = train_config(llmcompressor=_keep(["re:.*qkv_proj.weight"]))
    with pytest.raises(ConfigError, match=r"targets \['re:\.\*qkv_proj\.weight'\] match no trainable weight"):
        keep_sparsity(cfg, tiny_model)


@pytest.mark.slow
def test_zeros_stay_zero_under_deepspeed_zero3_on_two_ranks(pruned_model_dir, train_config, tmp_path):
    """ZeRO-3 (hpcft's default) keeps fp32 master weights in its optimizer and a slice of each weight per rank: the
    gradient masks are what keeps the zeros there."""
    from .test_train_zero3 import torchrun

    cfg = train_config(
        **{**RUN, "max_steps": 3, "save_steps": None, "base_model": str(pruned_model_dir), "deepspeed": "zero3"},
        llmcompressor=_keep(TARGETS),
    )
    result = torchrun(write_config(cfg, tmp_path / "train.yaml"))
    assert result.returncode == 0, result.why
    before, after = load_file(pruned_model_dir / "model.safetensors"), load_file(f"{cfg.output_dir}/model.safetensors")
    for key in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        zeros = before[key] == 0
        assert after[key].shape == before[key].shape and torch.all(after[key][zeros] == 0)
        assert not torch.equal(after[key][~zeros], before[key][~zeros])
    assert int((after["model.layers.0.self_attn.k_proj.weight"] == 0).sum()) < 100  # untargeted: filled in
