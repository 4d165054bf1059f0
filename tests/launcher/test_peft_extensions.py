"""Login-node rules of the LoRA/quantisation extensions (core/features/peft_extensions.py): one message naming
the key."""

from __future__ import annotations

import pytest

from hpcft.core.schema import TrainConfig

BASE = {"base_model": "m", "datasets": [{"path": "d.jsonl"}]}
QLORA = {"adapter": "qlora", "load_in_4bit": True, "lora_target_modules": ["q_proj"]}
LORA = {"adapter": "lora", "lora_target_modules": ["q_proj"]}


def _cfg(**keys) -> TrainConfig:
    return TrainConfig.model_validate({**BASE, **keys})


def test_axolotl_moe_shapes_are_accepted():
    # examples/minimax/m2-qlora.yaml: LoRA on the experts only; examples/glm47-flash/lora.yaml: int8 experts.
    experts = _cfg(adapter="lora", lora_dropout=0, lora_target_parameters=["mlp.experts.gate_up_proj"])
    assert experts.lora_target_parameters == ["mlp.experts.gate_up_proj"]
    int8 = _cfg(adapter="lora", load_in_8bit=True, quantize_moe_experts=True, lora_target_modules=["q_proj"])
    assert int8.quantize_moe_experts
    kwargs = _cfg(**QLORA, bnb_config_kwargs={"bnb_4bit_quant_storage": "torch.bfloat16", "llm_int8_threshold": 6})
    assert kwargs.bnb_config_kwargs == {"bnb_4bit_quant_storage": "bfloat16", "llm_int8_threshold": 6}
    assert "quantize_moe_experts" not in _cfg(**QLORA).training_dict()  # unset keys stay out of train.yaml


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({**QLORA, "quantize_moe_experts": True, "lora_target_linear": True}, "does not work with lora_target_linear"),
        ({"quantize_moe_experts": True}, "quantize_moe_experts needs adapter"),
        ({"adapter": "lora", "lora_target_parameters": ["experts.down_proj"], "peft_use_dora": True}, "DoRA"),
        ({**QLORA, "bnb_config_kwargs": {"load_in_4bit": True}}, "set the top-level load_in_4bit key instead"),
        ({**QLORA, "bnb_config_kwargs": {"llm_int8_skip_modules": "out_proj"}}, "not a list of module names"),
        ({**LORA, "bnb_config_kwargs": {"bnb_4bit_quant_type": "nf4"}}, "it needs load_in_4bit"),
        ({**LORA, "peft": {"loftq_config": {"loftq_bits": 3}}}, "loftq_bits"),
        ({"loraplus_lr_ratio": 16}, "loraplus_lr_ratio sets the learning rate of LoRA's B matrices"),
        ({**QLORA, "unfrozen_parameters": ["^lm_head.weight$[:10]"]}, "row range"),
    ],
)
def test_bad_combinations_name_the_key(keys, message):
    with pytest.raises(ValueError, match=message):
        _cfg(**keys)
