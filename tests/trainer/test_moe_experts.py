"""MoE experts on a tiny random Qwen3-MoE (fused 3-D expert weights, as transformers 5 stores them): bitsandbytes
quantisation of the experts (quantize_moe_experts), LoRA on parameters (lora_target_parameters), bnb_config_kwargs
and LoftQ, all through load_model as training uses it (real transformers, peft and bitsandbytes on CPU)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.loading import load_model, load_tokenizer, quantization_config
from hpcft.trainer.model.loftq import loftq_arguments
from hpcft.trainer.tiny import make_tiny_moe

EXPERTS = ["experts.gate_up_proj", "experts.down_proj"]


@pytest.fixture(scope="module")
def tiny_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Qwen3-MoE (4 experts, 2 per token) with the tiny tokenizer."""
    path = tmp_path_factory.mktemp("tiny-moe")
    make_tiny_moe(path)
    return path


def _cfg(model_dir: Path, tmp_path: Path, **keys) -> TrainConfig:
    return TrainConfig.model_validate(
        {"base_model": str(model_dir), "output_dir": str(tmp_path / "out"), "datasets": [{"path": "x.jsonl"}], **keys}
    )


def _train_steps(model, tokenizer, steps: int = 3) -> list[float]:
    """A few optimizer steps on one batch; every trainable parameter must receive a gradient each step."""
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


def _experts(model):
    experts = model.base_model.model.model.layers[0].mlp.experts
    return experts.get_base_layer() if hasattr(experts, "get_base_layer") else experts


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_experts_train_lora_on_parameters(bits, tiny_moe_dir, tmp_path):
    from bitsandbytes.nn.parametrize import Bnb4bitParametrization

    keys = {"adapter": "qlora", "load_in_4bit": True} if bits == 4 else {"adapter": "lora", "load_in_8bit": True}
    cfg = _cfg(
        tiny_moe_dir,
        tmp_path,
        **keys,
        quantize_moe_experts=True,
        lora_target_modules=["q_proj", "v_proj"],
        lora_target_parameters=EXPERTS,
    )
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    experts = _experts(model)
    stored = {name: chain.original for name, chain in experts.parametrizations.items()}
    assert set(stored) == {"gate_up_proj", "down_proj"}
    assert all(t.dtype == (torch.uint8 if bits == 4 else torch.int8) and not t.requires_grad for t in stored.values())
    if bits == 4:
        state = experts.parametrizations["gate_up_proj"][0]
        assert isinstance(state, Bnb4bitParametrization) and state.quant_state.quant_type == "nf4"
        assert state.quant_state.nested  # double quantisation, as for the linear layers
    # The experts read the dequantised weight with its original 3-D shape.
    assert experts.gate_up_proj.shape == (4, 64, 64) and experts.gate_up_proj.dtype == torch.float32
    lora_on_experts = [n for n, p in model.named_parameters() if p.requires_grad and ".experts." in n]
    assert len(lora_on_experts) == 2 * 2 * 2  # 2 layers x (gate_up_proj, down_proj) x (A, B)
    losses = _train_steps(model, tokenizer)
    assert losses[-1] < losses[0]
    # peft's LoRA proxy is taken off again after each forward: only the dequantisation stays on the weight.
    assert {name: len(chain) for name, chain in experts.parametrizations.items()} == {"gate_up_proj": 1, "down_proj": 1}
    for name in ("lora_A", "lora_B"):  # both wrapped parameters of a module learn, the inner one included
        assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if ".experts." in n and f"{name}." in n)

    model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert sorted(saved["target_parameters"]) == [
        f"model.layers.{i}.mlp.experts.{p}" for i in (0, 1) for p in ("down_proj", "gate_up_proj")
    ]
    again = load_model(cfg.model_copy(update={"lora_model_dir": str(tmp_path / "adapter")}), tokenizer, Precision())
    assert _train_steps(again, tokenizer, steps=2)[0] == pytest.approx(losses[-1], rel=0.2)
    # The adapter is nested as peft nests it on the 16-bit model: it loads there unchanged (merge-lora, serving).
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_moe_dir), tmp_path / "adapter")
    trained, loaded = get_peft_model_state_dict(model), get_peft_model_state_dict(plain)
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)
    merged = plain.merge_and_unload().model.layers[0].mlp.experts.down_proj
    base = AutoModelForCausalLM.from_pretrained(tiny_moe_dir).model.layers[0].mlp.experts.down_proj
    assert not torch.equal(merged, base)


def test_lora_target_parameters_on_unquantized_experts_with_separate_names(tiny_moe_dir, tmp_path):
    """axolotl configs may name the experts' gate and up projections apart (transformers 5 fuses them), and may
    put LoRA on the experts only (no lora_target_modules, as examples/minimax/m2-qlora.yaml)."""
    cfg = _cfg(
        tiny_moe_dir,
        tmp_path,
        adapter="lora",
        lora_target_parameters=["mlp.experts.gate_proj", "experts.up_proj", "experts.down_proj"],
    )
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    assert sorted(model.peft_config["default"].target_parameters) == [
        f"model.layers.{i}.mlp.experts.{p}" for i in (0, 1) for p in ("down_proj", "gate_up_proj")
    ]
    trainable = {n.split(".experts.")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"base_model.model.model.layers.{i}.mlp" for i in (0, 1)}  # nothing but the experts
    assert _train_steps(model, tokenizer, steps=2)


def test_lora_target_parameters_that_match_nothing_name_the_expert_weights(tiny_moe_dir, tmp_path):
    from hpcft.core.errors import ConfigError

    cfg = _cfg(tiny_moe_dir, tmp_path, adapter="lora", lora_target_modules=["q_proj"], lora_target_parameters="w9")
    with pytest.raises(ConfigError, match=r"lora_target_parameters \['w9'\] match no parameter.*experts.gate_up_proj"):
        load_model(cfg, load_tokenizer(cfg), Precision())


def test_bnb_config_kwargs_reach_bitsandbytes(tiny_moe_dir, tmp_path):
    cfg = _cfg(
        tiny_moe_dir,
        tmp_path,
        adapter="qlora",
        load_in_4bit=True,
        lora_target_modules=["q_proj"],
        bnb_config_kwargs={
            "bnb_4bit_quant_type": "fp4",
            "bnb_4bit_use_double_quant": False,
            "bnb_4bit_quant_storage": "torch.bfloat16",
        },
    )
    config = quantization_config(cfg, torch.float32, zero3=False)
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == ("fp4", False)
    assert config.bnb_4bit_quant_storage == torch.bfloat16
    assert config.bnb_4bit_compute_dtype == torch.float32  # not overridden: the training precision
    # The experts follow the same settings.
    moe = cfg.model_copy(update={"quantize_moe_experts": True, "bnb_config_kwargs": {"bnb_4bit_quant_type": "fp4"}})
    model = load_model(moe, load_tokenizer(moe), Precision())
    assert _experts(model).parametrizations["down_proj"][0].quant_state.quant_type == "fp4"


def test_loftq_is_passed_to_peft_on_gpus_and_warned_about_on_cpu(tiny_moe_dir, tmp_path, caplog):
    cfg = _cfg(
        tiny_moe_dir, tmp_path, adapter="lora", lora_target_modules=["q_proj"], peft={"loftq_config": {"loftq_bits": 8}}
    )
    on_gpu = loftq_arguments(cfg, cuda=True, scipy=True)  # what LoraConfig gets on a GPU node
    assert on_gpu["init_lora_weights"] == "loftq" and on_gpu["loftq_config"].loftq_bits == 8
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        assert loftq_arguments(cfg, cuda=False, scipy=True) == {}
        assert loftq_arguments(cfg, cuda=True, scipy=False) == {}
    assert "LoftQ initialisation runs on a CUDA GPU" in caplog.text and "needs scipy" in caplog.text
    # On this CPU node training starts from the standard initialisation: B is zero, the model as loaded.
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert all(torch.all(p == 0) for n, p in model.named_parameters() if "lora_B" in n)


def test_validate_says_loftq_falls_back_on_a_cpu_profile(run_cli, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "cfg.yaml").write_text(
        "base_model: ./model\ndatasets:\n  - path: ./d.jsonl\n    type: completion\n"
        "adapter: lora\nlora_target_linear: true\npeft:\n  loftq_config:\n    loftq_bits: 4\n"
    )
    result = run_cli("validate", "--profile", "local", tmp_path / "cfg.yaml", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "LoftQ initialisation runs on CUDA GPUs; this profile has none" in result.err
