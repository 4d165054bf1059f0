"""axolotl's peft_* / lora_*_pattern keys reach peft's LoraConfig and change the adapter as peft defines them."""

from __future__ import annotations

import pytest
import torch

from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.loading import load_model, load_tokenizer

LORA = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}


def _lora_shapes(model) -> dict[str, tuple[int, ...]]:
    return {n.removeprefix("base_model.model."): tuple(p.shape) for n, p in model.named_parameters() if "lora_A" in n}


def test_rank_alpha_and_layer_choice_reach_peft(train_config):
    cfg = train_config(
        **LORA,
        lora_rank_pattern={"v_proj": 2},
        lora_alpha_pattern={"v_proj": 32},
        peft_layers_to_transform=[1],
        peft_layers_pattern=["layers"],
    )
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert _lora_shapes(model) == {
        "model.layers.1.self_attn.q_proj.lora_A.default.weight": (4, 64),
        "model.layers.1.self_attn.v_proj.lora_A.default.weight": (2, 64),  # rank from the pattern; layer 0 untouched
    }
    assert model.base_model.model.model.layers[1].self_attn.v_proj.scaling["default"] == 32 / 2


def test_init_trainable_tokens_and_layer_replication_reach_peft(train_config):
    cfg = train_config(
        **LORA,
        peft_init_lora_weights="gaussian",
        peft_trainable_token_indices=[5, 7],
        peft_layer_replication=[[0, 2], [1, 2]],
    )
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert len(model.base_model.model.model.layers) == 3  # layers 0, 1 and a second copy of 1
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trainable)
    delta = next(p for n, p in model.named_parameters() if "trainable_tokens_delta" in n)
    assert delta.shape[0] == 2  # only the two listed token rows train
    peft_config = model.peft_config["default"]
    assert peft_config.init_lora_weights == "gaussian"
    assert [list(r) for r in peft_config.layer_replication] == [[0, 2], [1, 2]]
    ids = torch.arange(3, 20).unsqueeze(0)
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"peft_init_lora_weights": "eva"}, "peft_init_lora_weights: 'eva' is not one of"),
        ({"peft_layers_pattern": ["layers"]}, "set that too"),
        ({"lora_rank_pattern": {"q_proj": 0}}, "not a positive integer"),
    ],
)
def test_bad_peft_options_are_refused_on_the_login_node(train_config, keys, message):
    with pytest.raises(ValueError, match=message):
        train_config(**LORA, **keys)


def test_peft_options_need_an_adapter(train_config):
    with pytest.raises(ValueError, match="lora_rank_pattern configures the LoRA adapter"):
        train_config(lora_rank_pattern={"q_proj": 2})


def test_loraplus_gives_the_b_matrices_their_own_learning_rate(train_config, tmp_path):
    from transformers import Trainer, TrainingArguments

    from hpcft.trainer.loop.loraplus import loraplus_optimizer

    cfg = train_config(**LORA, learning_rate=1e-3, loraplus_lr_ratio=16, optimizer="adamw_torch")
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    args = TrainingArguments(output_dir=str(tmp_path / "args"), learning_rate=1e-3, optim="adamw_torch", use_cpu=True)
    trainer = Trainer(model=model, args=args, optimizer_cls_and_kwargs=loraplus_optimizer(cfg, args, model))
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)].split(".")[-3]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of == {"lora_A": 1e-3, "lora_B": 1e-3 * 16}
    assert all(group["weight_decay"] == 0.0 for group in optimizer.param_groups)  # as axolotl's LoRA+
    assert loraplus_optimizer(train_config(**LORA), args, model) is None
    with pytest.raises(ValueError, match="loraplus_lr_embedding applies with LoRA\\+ only"):
        train_config(**LORA, loraplus_lr_embedding=1e-5)
