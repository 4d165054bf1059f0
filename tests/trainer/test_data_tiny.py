"""The tiny tokenizer and model: loadable with Auto* classes, deterministic, fast."""

from __future__ import annotations

import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hpcft.trainer.tiny import make_tiny_model, make_tiny_tokenizer


def test_tiny_tokenizer_is_deterministic_and_chat_ready(tmp_path, tiny_tokenizer):
    make_tiny_tokenizer(tmp_path / "again")
    again = AutoTokenizer.from_pretrained(tmp_path / "again")
    assert again.get_vocab() == tiny_tokenizer.get_vocab() and 512 <= len(again) <= 1024
    assert (again.bos_token, again.eos_token, again.pad_token) == ("<s>", "<|im_end|>", "<pad>")
    assert len({again.bos_token_id, again.eos_token_id, again.pad_token_id}) == 3
    text = again.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert again("What is two plus three?")["input_ids"][0] == again.bos_token_id
    assert again.decode(again("The cow says moo.", add_special_tokens=False)["input_ids"]) == "The cow says moo."


def test_tiny_model_is_deterministic_fast_and_loadable(tmp_path, tiny_model_dir):
    started = time.monotonic()
    make_tiny_model(tmp_path / "model")
    assert time.monotonic() - started < 5
    first = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    second = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert first.config.hidden_size == 64 and first.config.num_hidden_layers == 2
    assert first.config.vocab_size == len(AutoTokenizer.from_pretrained(tmp_path / "model"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
