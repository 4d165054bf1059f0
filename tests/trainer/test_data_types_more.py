"""axolotl's reasoning keys (field_thinking, template_thinking_key), prompt styles (`alpaca:chat`), jeopardy and
pretrain rows, pinned token by token on the tiny tokenizer: input_ids and labels."""

from __future__ import annotations

import itertools
import re

import pytest

from hpcft.core.errors import ConfigError
from hpcft.trainer.data.formats import IGNORE_INDEX, make_formatter

S, Q1, A1, Q2, A2, R = (
    "You are a tiny assistant.",
    "What is two plus three?",
    "two plus three is five.",
    "What does the cow say?",
    "The cow says moo.",
    "The cow is an animal.",
)
EOS = "<|im_end|>"
# gpt-oss's harmony layout in miniature: the template reads a message's reasoning as `message.thinking`.
HARMONY = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role }}{% if m.thinking is defined %}{{ ' thinking: ' + m.thinking }}"
    "{% endif %}{{ '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
)


def expected_tokens(tokenizer, marked: str) -> tuple[list[int], list[int]]:
    """input_ids of the marked text without its marks, and labels training the tokens overlapping a ⟦⟧ range."""
    text, ranges = "", []
    for piece in re.split(r"(⟦[^⟧]*⟧)", marked):
        if piece.startswith("⟦"):
            ranges.append((len(text), len(text) + len(piece) - 2))
            piece = piece[1:-1]
        text += piece
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(a < end and b > start for start, end in ranges) else IGNORE_INDEX
        for token, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ]
    return encoded["input_ids"], labels


def formatted(train_config, tokenizer, row: dict, **dataset_keys) -> list[tuple[list[int], list[int]]]:
    cfg = train_config(datasets=[{"path": "unused.jsonl", **dataset_keys}], sequence_len=256)
    return make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)


def conversation(reasoning_key: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": S},
            {"role": "user", "content": Q1},
            {"role": "assistant", "content": A1},
            {"role": "user", "content": Q2},
            {"role": "assistant", "content": A2, reasoning_key: R},
        ]
    }


HARMONY_EXPECTED = (
    f"<|im_start|>system\n{S}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n⟦{A1}<|im_end|>⟧\n"
    f"<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant⟦ thinking: {R}\n{A2}<|im_end|>⟧\n"
)


@pytest.mark.parametrize(
    ("data_key", "keys"),
    [
        # gpt-oss examples: the data and the template both say `thinking`.
        ("thinking", {"field_thinking": "thinking", "template_thinking_key": "thinking"}),
        # the data keeps axolotl's default name; the template reads another one.
        ("reasoning_content", {"template_thinking_key": "thinking"}),
        # the data names it otherwise; message_property_mappings says the same as field_thinking.
        ("trace", {"message_property_mappings": {"thinking": "trace"}}),
        ("trace", {"field_thinking": "trace", "template_thinking_key": "thinking"}),
    ],
)
def test_reasoning_reaches_the_template_under_template_thinking_key(train_config, tiny_tokenizer, data_key, keys):
    [got] = formatted(
        train_config, tiny_tokenizer, conversation(data_key), type="chat_template", chat_template_jinja=HARMONY, **keys
    )
    assert got == expected_tokens(tiny_tokenizer, HARMONY_EXPECTED)


def test_reasoning_under_a_key_nobody_names_is_not_rendered(train_config, tiny_tokenizer):
    # (transformers itself hands reasoning_content, thinking and reasoning to a template under all three names.)
    [(ids, _)] = formatted(
        train_config, tiny_tokenizer, conversation("trace"), type="chat_template", chat_template_jinja=HARMONY
    )
    assert "thinking:" not in tiny_tokenizer.decode(ids)


def test_split_thinking_writes_template_thinking_key(train_config, tiny_tokenizer):
    row = conversation("unused")
    row["messages"][-1] = {"role": "assistant", "content": f"<think>{R}</think>\n{A2}"}
    [got] = formatted(
        train_config,
        tiny_tokenizer,
        row,
        type="chat_template",
        chat_template_jinja=HARMONY,
        split_thinking=True,
        template_thinking_key="thinking",
    )
    assert got == expected_tokens(tiny_tokenizer, HARMONY_EXPECTED)


INSTRUCTION, INPUT, OUTPUT = "Add the numbers.", "two and three", "five"
WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


@pytest.mark.parametrize(
    ("style", "with_input", "without_input"),
    [
        (
            "chat",
            f"SYSTEM: {WITH_INPUT}\nUSER: {INSTRUCTION}\n{INPUT}\nASSISTANT:",
            f"SYSTEM: {NO_INPUT}\nUSER: {INSTRUCTION}\nASSISTANT:",
        ),
        (
            "chatml",
            f"<|im_start|>system\n{WITH_INPUT}<|im_end|>\n<|im_start|>user\n{INSTRUCTION}\n{INPUT}<|im_end|>\n"
            "<|im_start|>assistant\n",
            f"<|im_start|>system\n{NO_INPUT}<|im_end|>\n<|im_start|>user\n{INSTRUCTION}<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (
            "phi",
            f"<|system|>\n{WITH_INPUT}<|end|>\n<|user|>\n{INSTRUCTION}<|end|>{INPUT}<|assistant|>",
            f"<|system|>\n{NO_INPUT}<|end|>\n<|user|>\n{INSTRUCTION}<|end|>\n<|assistant|>\n",
        ),
        (
            "instruct",
            f"{WITH_INPUT}\n\n### Instruction:\n{INSTRUCTION}\n\n### Input:\n{INPUT}\n\n### Response:\n",
            f"{NO_INPUT}\n\n### Instruction:\n{INSTRUCTION}\n\n### Response:\n",
        ),
    ],
)
def test_alpaca_prompt_styles(train_config, tiny_tokenizer, style, with_input, without_input):
    for row, prompt in (
        ({"instruction": INSTRUCTION, "input": INPUT, "output": OUTPUT}, with_input),
        ({"instruction": INSTRUCTION, "output": OUTPUT}, without_input),
    ):
        [got] = formatted(train_config, tiny_tokenizer, row, type=f"alpaca:{style}")
        # As axolotl: prompt and answer tokenized apart (the prompt with BOS), the answer and its EOS trained.
        prompt_ids = tiny_tokenizer(prompt)["input_ids"]
        answer_ids = tiny_tokenizer(OUTPUT, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
        assert got == (prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids)
    [plain] = formatted(train_config, tiny_tokenizer, {"instruction": INSTRUCTION, "output": OUTPUT}, type="alpaca")
    if style == "instruct":
        assert plain == got


def test_jeopardy_rows(train_config, tiny_tokenizer):
    row = {"question": "It says moo", "category": "ANIMALS", "answer": "the cow", "air_date": "2004-12-31"}
    [(ids, labels)] = formatted(train_config, tiny_tokenizer, row, type="jeopardy")
    prompt = f"<s>{WITH_INPUT}\n\n### Instruction:\nIt says moo\n\n### Input:\nANIMALS\n\n### Response:\n"
    assert (ids, labels) == expected_tokens(tiny_tokenizer, f"{prompt}⟦what is the cow{EOS}⟧")
    [(chat_ids, _)] = formatted(train_config, tiny_tokenizer, row, type="jeopardy:chat")
    assert tiny_tokenizer.decode(chat_ids).startswith(f"<s>SYSTEM: {WITH_INPUT}\nUSER: It says moo\nANIMALS\n")
    with pytest.raises(ConfigError, match=r"row 1: missing field 'category' \(jeopardy rows need"):
        formatted(train_config, tiny_tokenizer, {"question": "q", "answer": "a"}, type="jeopardy")


def test_pretrain_rows_are_overlapping_windows_each_ending_in_eos(train_config, tiny_tokenizer):
    text = " ".join(f"The {a} says {s}." for a, s in [("cow", "moo"), ("dog", "woof"), ("cat", "meow")] * 8)
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "pretrain", "text_column": "body"}], sequence_len=32)
    samples = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "d")({"body": text}, 1)
    all_ids = tiny_tokenizer(text)["input_ids"]  # with BOS, as axolotl tokenizes pretraining text
    stride = min(256, (32 - 1) // 2)
    assert len(samples) > 2
    for ids, labels in samples:
        assert ids == labels and ids[-1] == tiny_tokenizer.eos_token_id and len(ids) <= 32
    # The first window is the text's first 31 tokens (BOS included); every window starts with BOS and repeats the
    # last `stride` tokens of the one before.
    assert samples[0][0][:-1] == all_ids[:31]
    for before, after in itertools.pairwise(samples):
        assert after[0][0] == tiny_tokenizer.bos_token_id
        assert after[0][1 : 1 + stride] == before[0][-1 - stride : -1]
    assert tiny_tokenizer.decode(samples[-1][0][:-1]).endswith("meow.")
    with pytest.raises(ConfigError, match="missing field 'body' \\(set text_column:\\)"):
        make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "d")({"text": text}, 1)
