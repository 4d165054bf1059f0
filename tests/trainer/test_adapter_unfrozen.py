"""unfrozen_parameters together with an adapter (axolotl's Gemma 3 QLoRA examples set both): the patterns choose
which of the adapter's weights train, matched on the names the base model uses."""

from __future__ import annotations

import logging

import pytest
import torch

from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.loading import load_model, load_tokenizer

LORA = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}


def _trainable(model) -> set[str]:
    return {n.removeprefix("base_model.model.") for n, p in model.named_parameters() if p.requires_grad}


def test_patterns_narrow_the_adapter_to_the_weights_they_name(train_config):
    patterns = ["^model.layers.1.+", "^lm_head.*"]
    cfg = train_config(**LORA, lora_modules_to_save=["lm_head"], unfrozen_parameters=patterns)
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert _trainable(model) == {
        "model.layers.1.self_attn.q_proj.lora_A.default.weight",
        "model.layers.1.self_attn.q_proj.lora_B.default.weight",
        "model.layers.1.self_attn.v_proj.lora_A.default.weight",
        "model.layers.1.self_attn.v_proj.lora_B.default.weight",
        "lm_head.modules_to_save.default.weight",
    }
    ids = torch.arange(3, 30).unsqueeze(0)
    model(input_ids=ids, labels=ids).loss.backward()
    layer0 = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer0.lora_B["default"].weight.grad is None  # frozen by the patterns
    assert model.base_model.model.model.layers[1].self_attn.q_proj.lora_B["default"].weight.grad.abs().sum() > 0


def test_axolotl_gemma3_qlora_patterns_keep_the_whole_adapter_training(train_config, caplog):
    """examples/gemma3/gemma-3-1b-qlora.yml: patterns for base weights of a multimodal Gemma 3. axolotl matches them
    against peft's `base_model.model.` names, freezes everything and trains nothing; hpcft trains the adapter."""
    cfg = train_config(
        adapter="qlora",
        load_in_4bit=True,
        lora_target_linear=True,
        unfrozen_parameters=["^model.language_model.*", "^lm_head.*"],
    )
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        model = load_model(cfg, load_tokenizer(cfg), Precision())
    trainable = _trainable(model)
    assert trainable and all(".lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 7  # 2 layers x 7 linear layers x (A, B): nothing frozen
    assert "match none of the adapter's weights" in caplog.text and "training the whole adapter" in caplog.text


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"unfrozen_parameters": ["^model.embed_tokens.weight$[:10]"]}, "row range"),
        ({"unfrozen_parameters": ["^model.+"], "rl": "dpo"}, "not supported with rl: dpo"),
    ],
)
def test_unfrozen_parameters_with_an_adapter_refuses_what_has_no_meaning(train_config, keys, message):
    with pytest.raises(ValueError, match=message):
        train_config(**LORA, **keys)
