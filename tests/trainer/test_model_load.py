"""Model loading: attention fallback, LoRA targets, added tokens, gradient checkpointing, 4/8-bit (one process)."""

from __future__ import annotations

import logging

import pytest
import torch

from hpcft.core.errors import ConfigError
from hpcft.trainer.loop.args import Precision
from hpcft.trainer.model.loading import load_model, load_tokenizer, lora_target_modules, resolve_attention

LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
LORA = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8}


def _loss_and_backward(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["What is two plus three? two plus three is five."], return_tensors="pt")
    out = model(input_ids=batch["input_ids"], labels=batch["input_ids"])
    out.loss.backward()
    return out.loss


def test_flash_attention_falls_back_to_sdpa_with_one_message(train_config, caplog):
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        assert resolve_attention(train_config(flash_attention=True)) == "sdpa"  # no flash-attn / GPU here
    assert len(caplog.records) == 1 and "flash_attention_2 was asked for but" in caplog.text
    assert resolve_attention(train_config(attn_implementation="eager")) == "eager"
    assert resolve_attention(train_config()) == "sdpa"


def test_an_architecture_without_sdpa_loads_with_eager_attention(train_config, tiny_tokenizer, tmp_path, caplog):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    Gemma2ForCausalLM(config).save_pretrained(tmp_path / "gemma2")
    tiny_tokenizer.save_pretrained(tmp_path / "gemma2")
    cfg = train_config(base_model=str(tmp_path / "gemma2"))
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert model.config._attn_implementation == "eager"
    assert "has no sdpa attention" in caplog.text
    assert torch.isfinite(_loss_and_backward(model, tiny_tokenizer))


def test_lora_target_linear_takes_every_linear_but_lm_head(train_config, tiny_model):
    assert lora_target_modules(train_config(**LORA, lora_target_linear=True), tiny_model) == LLAMA_LINEAR
    cfg = train_config(**LORA, lora_target_modules=["q_proj", "v_proj"])
    assert lora_target_modules(cfg, tiny_model) == ["q_proj", "v_proj"]
    regex = r".*layers\.0\.self_attn\.(q|v)_proj"
    assert lora_target_modules(train_config(**LORA, lora_target_modules=regex), tiny_model) == regex


def test_lora_with_gradient_checkpointing_trains_only_the_adapter(train_config):
    cfg = train_config(
        **LORA,
        lora_target_linear=True,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": True},
    )
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    model.train()
    assert model.base_model.model.is_activation_checkpointing  # checkpointing really on
    _loss_and_backward(model, tokenizer)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    # reentrant checkpointing gives no grads unless the inputs require grad (enable_input_require_grads)
    assert all(g is not None for n, g in grads.items() if "lora_A" in n)
    assert any(g.abs().sum() > 0 for g in grads.values() if g is not None)


def test_added_tokens_resize_embeddings_and_need_trainable_embeddings_with_lora(train_config):
    cfg = train_config(tokens=["<tool_call>", "</tool_call>"], special_tokens={"pad_token": "<pad>"})
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<tool_call>") == len(tokenizer) - 2
    lora = train_config(**LORA, lora_target_linear=True, tokens=["<tool_call>"])
    with pytest.raises(ConfigError, match="lora_modules_to_save: \\[embed_tokens, lm_head\\]"):
        load_model(lora, load_tokenizer(lora), Precision())
    ok = train_config(
        **LORA, lora_target_linear=True, tokens=["<tool_call>"], lora_modules_to_save=["embed_tokens", "lm_head"]
    )
    peft_model = load_model(ok, load_tokenizer(ok), Precision())
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("embed_tokens.modules_to_save" in n for n in trainable)


def test_continue_an_adapter_from_lora_model_dir(train_config, tmp_path):
    cfg = train_config(**LORA, lora_target_modules=["q_proj", "v_proj"])
    tokenizer = load_tokenizer(cfg)
    first = load_model(cfg, tokenizer, Precision())
    with torch.no_grad():
        for name, param in first.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)  # a "trained" adapter: lora_B starts at zero
    first.save_pretrained(tmp_path / "adapter")
    again = load_model(
        train_config(**LORA, lora_target_modules=["q_proj", "v_proj"], lora_model_dir=str(tmp_path / "adapter")),
        tokenizer,
        Precision(),
    )
    b_weights = [p for n, p in again.named_parameters() if "lora_B" in n]
    assert b_weights and all(p.requires_grad and torch.all(p == 0.01) for p in b_weights)


def test_qlora_loads_nf4_and_trains_on_cpu(train_config):
    """bitsandbytes 0.50.2 runs 4-bit (nf4, double quant) and 8-bit layers on CPU."""
    import bitsandbytes as bnb

    cfg = train_config(adapter="qlora", load_in_4bit=True, lora_target_linear=True, gradient_checkpointing=True)
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer, Precision())
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(q_proj, bnb.nn.Linear4bit) and q_proj.weight.quant_type == "nf4"
    assert q_proj.weight.quant_state.nested  # double quantisation
    model.train()
    loss = _loss_and_backward(model, tokenizer)
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)

    cfg8 = train_config(**LORA, load_in_8bit=True, lora_target_modules=["q_proj", "v_proj"])
    model8 = load_model(cfg8, tokenizer, Precision())
    assert isinstance(model8.base_model.model.model.layers[0].self_attn.q_proj.base_layer, bnb.nn.Linear8bitLt)
    assert torch.isfinite(_loss_and_backward(model8, tokenizer))
