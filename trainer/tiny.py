"""A tiny, deterministic tokenizer and Llama model built offline: for tests and the README demo (no Hub)."""

from __future__ import annotations

import itertools
from pathlib import Path

from hpcft.launcher.chat_templates import chat_template_text

BOS, EOS, PAD = "<s>", "<|im_end|>", "<pad>"
IM_START = "<|im_start|>"

# ChatML (axolotl's `chatml`). EOS is <|im_end|> (as Qwen does) so that train_on_eos: turn trains the end of
# every assistant turn; the template itself adds no BOS.
CHATML_TEMPLATE = chat_template_text("chatml")

# The words of the example data (configs/examples/data/make_data.py builds its sentences from these).
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
]
COLORS = {
    "sky": "blue",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "sun": "yellow",
    "blood": "red",
    "night": "dark",
    "orange": "orange",
}
ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot"}
FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum"]


def tiny_corpus() -> list[str]:
    """Sentences covering the example data's words and the alpaca/chat prompt words, built deterministically."""
    lines = [
        "Below is an instruction that describes a task, paired with an input that provides further context.",
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
        "### Instruction:\n### Input:\n### Response:\n",
        "You are a helpful assistant. You are a tiny assistant. Answer briefly.",
        "system user assistant human gpt tool",
        "system\nuser\nassistant\n",
    ]
    for a, b in itertools.product(range(10), repeat=2):
        lines.append(
            f"user\nWhat is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?\nassistant\n{NUMBER_WORDS[a]} plus "
            f"{NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}. {a} + {b} = {a + b}."
        )
    for thing, color in COLORS.items():
        lines.append(f"What color is the {thing}?\nThe {thing} is {color}.")
    for animal, sound in ANIMALS.items():
        lines.append(f"What does the {animal} say?\nThe {animal} says {sound}.")
    for x, y in itertools.permutations(FRUITS, 2):
        lines.append(f"Repeat after me: {x} {y}.\n{x} {y}. Thank you! Hello, how are you? I am fine.")
    return lines


def make_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 768):
    """Train a byte-level BPE tokenizer on `tiny_corpus()` and save it (with a ChatML chat_template) to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    # Plain text gets a BOS (as Llama tokenizers do); chat templates add their own special tokens.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def make_tiny_model(out_dir: str | Path, vocab_size: int | None = None, seed: int = 0):
    """Save a random 2-layer LlamaForCausalLM (hidden 64) and the tiny tokenizer into out_dir; return the model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tiny_tokenizer(out_dir)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out_dir))
    return model
