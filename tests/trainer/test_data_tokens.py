"""Every dataset type and every named chat template, pinned token by token: input_ids and labels.

Each chat template case writes out by hand the text the model family's published format gives for the
conversation, with the trained characters between ⟦ and ⟧. The expected input_ids are that text tokenized; the
expected labels train exactly the tokens overlapping a marked range. The tokenizer is the tiny BPE with the
family's special tokens added and its end-of-turn token as EOS (as the family's instruct tokenizer has it).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from hpcft.core.chat_templates import (
    CHAT_TEMPLATE_NAMES,
    END_OF_TURN,
    chat_template_choice_error,
    chat_template_text,
)
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
CONVERSATION = [
    {"from": "system", "value": S},
    {"from": "human", "value": Q1},
    {"from": "gpt", "value": A1},
    {"from": "human", "value": Q2},
    {"from": "gpt", "value": A2},
]
MAPPED = {
    "type": "chat_template",
    "field_messages": "conversations",
    "message_property_mappings": {"role": "from", "content": "value"},
}

# axolotl's `ChatTemplate` names that select a bundled template (axolotl main 067b021), plus phi_4, which axolotl
# ships as a template file.
AXOLOTL_NAMES = {
    "alpaca",
    "chatml",
    "mistral_v1",
    "mistral_v2v3",
    "mistral_v3_tekken",
    "mistral_v7_tekken",
    "gemma",
    "cohere",
    "llama3",
    "llama3_2_vision",
    "llama4",
    "phi_3",
    "phi_35",
    "deepseek_v2",
    "deepseek_v3",
    "jamba",
    "qwen_25",
    "qwen3",
    "qwen3_5",
    "falcon_h1",
    "nemotron_h",
    "exaone",
    "exaone4",
    "metharme",
    "pixtral",
    "llava",
    "qwen2_vl",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4_unified",
    "command_a",
    "command_a_tool_use",
    "command_a_rag",
    "aya",
    "phi_4",
}


@dataclass(frozen=True)
class Case:
    eos: str  # the family's end-of-turn token, EOS of its instruct tokenizer
    specials: tuple[str, ...]  # the family's other special tokens
    expected: str  # the rendering, trained characters in ⟦⟧


def chatml(bos: str = "", last_prefix: str = "") -> Case:
    return Case(
        "<|im_end|>",
        ("<|im_start|>", "<think>", "</think>"),
        f"{bos}<|im_start|>system\n{S}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n"
        f"<|im_start|>assistant\n⟦{A1}<|im_end|>⟧\n<|im_start|>user\n{Q2}<|im_end|>\n"
        f"<|im_start|>assistant\n{last_prefix}⟦{A2}<|im_end|>⟧\n",
    )


COHERE = ("<|START_OF_TURN_TOKEN|>", "<|SYSTEM_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>")
COMMAND_A = (*COHERE, "<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_THINKING|>", "<|END_THINKING|>")
CMD_SYS, CMD_USER, CMD_BOT, CMD_END = (
    "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "<|END_OF_TURN_TOKEN|>",
)
LLAMA3 = Case(
    "<|eot_id|>",
    ("<|start_header_id|>", "<|end_header_id|>"),
    f"<s><|start_header_id|>system<|end_header_id|>\n\n{S}<|eot_id|>"
    f"<|start_header_id|>user<|end_header_id|>\n\n{Q1}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n⟦{A1}<|eot_id|>⟧"
    f"<|start_header_id|>user<|end_header_id|>\n\n{Q2}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n⟦{A2}<|eot_id|>⟧",
)
GEMMA = Case(
    "<end_of_turn>",
    ("<start_of_turn>",),
    f"<s><start_of_turn>user\n{S}\n\n{Q1}<end_of_turn>\n<start_of_turn>model\n⟦{A1}<end_of_turn>⟧\n"
    f"<start_of_turn>user\n{Q2}<end_of_turn>\n<start_of_turn>model\n⟦{A2}<end_of_turn>⟧\n",
)
GEMMA4 = Case(
    "<turn|>",
    ("<|turn>",),
    f"<s><|turn>system\n{S}<turn|>\n<|turn>user\n{Q1}<turn|>\n<|turn>model\n⟦{A1}<turn|>⟧\n"
    f"<|turn>user\n{Q2}<turn|>\n<|turn>model\n⟦{A2}<turn|>⟧\n",
)
COHERE_CASE = Case(
    "<|END_OF_TURN_TOKEN|>",
    COHERE,
    f"<s>{CMD_SYS}{S}{CMD_END}{CMD_USER}{Q1}{CMD_END}{CMD_BOT}⟦{A1}{CMD_END}⟧"
    f"{CMD_USER}{Q2}{CMD_END}{CMD_BOT}⟦{A2}{CMD_END}⟧",
)
COMMAND_A_CASE = Case(
    "<|END_OF_TURN_TOKEN|>",
    COMMAND_A,
    f"<s>{CMD_SYS}{S}{CMD_END}{CMD_USER}{Q1}{CMD_END}{CMD_BOT}<|START_RESPONSE|>⟦{A1}⟧"
    f"<|END_RESPONSE|>⟦{CMD_END}⟧{CMD_USER}{Q2}{CMD_END}{CMD_BOT}<|START_RESPONSE|>⟦{A2}⟧"
    f"<|END_RESPONSE|>⟦{CMD_END}⟧",
)
MISTRAL_V3 = Case("</s>", ("[INST]", "[/INST]"), f"<s>[INST]{Q1}[/INST]⟦{A1}</s>⟧[INST]{S}\n\n{Q2}[/INST]⟦{A2}</s>⟧")
PHI3 = (
    f"<|system|>\n{S}<|end|>\n<|user|>\n{Q1}<|end|>\n<|assistant|>\n⟦{A1}<|end|>⟧\n<|user|>\n{Q2}<|end|>\n"
    f"<|assistant|>\n⟦{A2}<|end|>⟧\n"
)
EXAONE4_SPECIALS = ("[|system|]", "[|user|]", "[|assistant|]", "<think>", "</think>")
EXAONE4_START = (
    f"[|system|]\n{S}[|endofturn|]\n[|user|]\n{Q1}[|endofturn|]\n[|assistant|]\n<think>\n\n</think>\n\n"
    f"⟦{A1}[|endofturn|]⟧\n[|user|]\n{Q2}[|endofturn|]\n[|assistant|]\n<think>\n\n</think>\n\n"
)
DEEPSEEK = ("<｜User｜>", "<｜Assistant｜>")
EOS_DS = "<｜end▁of▁sentence｜>"

CASES: dict[str, Case] = {
    "alpaca": Case(
        "</s>",
        (),
        f"<s>{S}\n\n### Instruction:\n{Q1}\n\n### Response:\n⟦{A1}</s>⟧\n\n"
        f"### Instruction:\n{Q2}\n\n### Response:\n⟦{A2}</s>⟧",
    ),
    "aya": COHERE_CASE,
    "chatml": chatml(),
    "cohere": COHERE_CASE,
    "command_a": COMMAND_A_CASE,
    "command_a_rag": COMMAND_A_CASE,
    "command_a_tool_use": COMMAND_A_CASE,
    "deepseek_v2": Case(
        EOS_DS,
        DEEPSEEK,
        f"<s>{S}\n\n<｜User｜>{Q1}<｜Assistant｜>⟦{A1}{EOS_DS}⟧<｜User｜>{Q2}<｜Assistant｜>⟦{A2}{EOS_DS}⟧",
    ),
    "deepseek_v3": Case(
        EOS_DS,
        DEEPSEEK,
        f"<s>{S}<｜User｜>{Q1}<｜Assistant｜>⟦{A1}{EOS_DS}⟧<｜User｜>{Q2}<｜Assistant｜>⟦{A2}{EOS_DS}⟧",
    ),
    "exaone": Case(
        "[|endofturn|]",
        ("[|system|]", "[|user|]", "[|assistant|]"),
        f"[|system|]{S}[|endofturn|]\n[|user|]{Q1}\n[|assistant|]⟦{A1}[|endofturn|]⟧\n"
        f"[|user|]{Q2}\n[|assistant|]⟦{A2}[|endofturn|]⟧\n",
    ),
    # EXAONE 4 opens every answer with a thinking block (empty without reasoning).
    "exaone4": Case("[|endofturn|]", EXAONE4_SPECIALS, f"{EXAONE4_START}⟦{A2}[|endofturn|]⟧\n"),
    "falcon_h1": chatml(bos="<s>"),
    "gemma": GEMMA,
    "gemma3": GEMMA,
    "gemma3n": GEMMA,
    "gemma4": GEMMA4,
    "gemma4_unified": GEMMA4,
    "jamba": Case(
        "<|eom|>",
        ("<|startoftext|>", "<|bom|>", "<|system|>", "<|user|>", "<|assistant|>"),
        f"<|startoftext|><|bom|><|system|> {S}<|eom|><|bom|><|user|> {Q1}<|eom|>"
        f"<|bom|><|assistant|> ⟦{A1}<|eom|>⟧"
        f"<|bom|><|user|> {Q2}<|eom|><|bom|><|assistant|> ⟦{A2}<|eom|>⟧",
    ),
    "llama3": LLAMA3,
    "llama3_2_vision": LLAMA3,
    "llama4": Case(
        "<|eot|>",
        ("<|header_start|>", "<|header_end|>"),
        f"<s><|header_start|>system<|header_end|>\n\n{S}<|eot|><|header_start|>user<|header_end|>\n\n"
        f"{Q1}<|eot|><|header_start|>assistant<|header_end|>\n\n⟦{A1}<|eot|>⟧"
        f"<|header_start|>user<|header_end|>\n\n{Q2}<|eot|>"
        f"<|header_start|>assistant<|header_end|>\n\n⟦{A2}<|eot|>⟧",
    ),
    # LLaVA's format has no end-of-turn token: only the answers are trained.
    "llava": Case("</s>", (), f"{S} USER: {Q1} ASSISTANT: ⟦{A1}⟧ USER: {Q2} ASSISTANT: ⟦{A2}⟧ "),
    # Metharme closes the whole text with one EOS: trained after the last answer only.
    "metharme": Case(
        "</s>",
        ("<|system|>", "<|user|>", "<|model|>"),
        f"<s><|system|>{S}<|user|>{Q1}<|model|>⟦{A1}⟧<|user|>{Q2}<|model|>⟦{A2}</s>⟧",
    ),
    "mistral_v1": Case(
        "</s>", ("[INST]", "[/INST]"), f"<s> [INST] {S}\n\n{Q1} [/INST] ⟦{A1}</s>⟧ [INST] {Q2} [/INST] ⟦{A2}</s>⟧"
    ),
    "mistral_v2v3": Case(
        "</s>", ("[INST]", "[/INST]"), f"<s>[INST] {Q1}[/INST] ⟦{A1}</s>⟧[INST] {S}\n\n{Q2}[/INST] ⟦{A2}</s>⟧"
    ),
    "mistral_v3_tekken": MISTRAL_V3,
    "mistral_v7_tekken": Case(
        "</s>",
        ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
        f"<s>[SYSTEM_PROMPT]{S}[/SYSTEM_PROMPT][INST]{Q1}[/INST]⟦{A1}</s>⟧[INST]{Q2}[/INST]⟦{A2}</s>⟧",
    ),
    "nemotron_h": chatml(),
    "phi_3": Case("<|end|>", ("<|system|>", "<|user|>", "<|assistant|>"), "<s>" + PHI3),
    "phi_35": Case("<|end|>", ("<|system|>", "<|user|>", "<|assistant|>"), PHI3),
    "phi_4": Case(
        "<|im_end|>",
        ("<|im_start|>", "<|im_sep|>"),
        f"<|im_start|>system<|im_sep|>{S}<|im_end|><|im_start|>user<|im_sep|>{Q1}<|im_end|>"
        f"<|im_start|>assistant<|im_sep|>⟦{A1}<|im_end|>⟧<|im_start|>user<|im_sep|>{Q2}<|im_end|>"
        f"<|im_start|>assistant<|im_sep|>⟦{A2}<|im_end|>⟧",
    ),
    "pixtral": MISTRAL_V3,
    "qwen2_vl": chatml(),
    # The final answer of a Qwen3 conversation carries a (here empty) thinking block.
    "qwen3": chatml(last_prefix="<think>\n\n</think>\n\n"),
    "qwen3_5": chatml(last_prefix="<think>\n\n</think>\n\n"),
    "qwen_25": chatml(),
}


@pytest.fixture(scope="module")
def family_tokenizer(tiny_model_dir: Path):
    """family_tokenizer(eos, specials) -> the tiny tokenizer with a family's special tokens (cached)."""
    from transformers import AutoTokenizer

    @cache
    def make(eos: str, specials: tuple[str, ...]):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        tokenizer.add_special_tokens({"eos_token": eos, "additional_special_tokens": list(specials)})
        return tokenizer

    return make


def expected_tokens(tokenizer, marked: str) -> tuple[list[int], list[int]]:
    """input_ids of the marked text without its marks, and labels training the tokens overlapping a ⟦⟧ range."""
    text, ranges = "", []
    for piece in re.split(r"(⟦[^⟧]*⟧)", marked):
        if piece.startswith("⟦"):
            ranges.append((len(text), len(text) + len(piece) - 2))
            piece = piece[1:-1]
        text += piece
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [
        token if any(a < end and b > start for start, end in ranges) else IGNORE_INDEX
        for token, (a, b) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return ids, labels


def format_row(train_config, tokenizer, row: dict, cfg_keys: dict | None = None, **dataset_keys):
    cfg = train_config(datasets=[{"path": "unused.jsonl", **MAPPED, **dataset_keys}], **(cfg_keys or {}))
    [(ids, labels)] = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)
    return ids, labels


def readable(tokenizer, ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """(token, trained) pairs: a failing comparison shows which token differs."""
    return [(tokenizer.convert_ids_to_tokens(t), label != IGNORE_INDEX) for t, label in zip(ids, labels, strict=True)]


def test_names_are_axolotls_and_each_ships_a_template():
    assert set(CHAT_TEMPLATE_NAMES) == AXOLOTL_NAMES == set(CASES)
    for name in CHAT_TEMPLATE_NAMES:
        assert "{%" in chat_template_text(name) and "messages" in chat_template_text(name), name
        assert chat_template_choice_error(name) is None
    for name, token in END_OF_TURN.items():  # the end-of-turn table agrees with the templates and the cases
        assert token in chat_template_text(name) and CASES[name].eos == token, name
    for choice in ("tokenizer_default", "jinja", "tokenizer_default_fallback_llama3"):
        assert chat_template_choice_error(choice) is None
    assert "unknown chat_template 'llama-3'" in chat_template_choice_error("llama-3")
    assert "'nope' is not a chat template" in chat_template_choice_error("tokenizer_default_fallback_nope")


@pytest.mark.parametrize("name", sorted(CASES))
def test_named_template_pins_input_ids_and_labels(name, train_config, family_tokenizer):
    case = CASES[name]
    tokenizer = family_tokenizer(case.eos, case.specials)
    ids, labels = format_row(train_config, tokenizer, {"conversations": CONVERSATION}, chat_template=name)
    want_ids, want_labels = expected_tokens(tokenizer, case.expected)
    assert readable(tokenizer, ids, labels) == readable(tokenizer, want_ids, want_labels)
    assert (ids, labels) == (want_ids, want_labels)


def test_named_template_from_config_level_and_tokenizer_fallback(train_config, family_tokenizer, tiny_tokenizer):
    tokenizer = family_tokenizer(LLAMA3.eos, LLAMA3.specials)
    want = expected_tokens(tokenizer, LLAMA3.expected)
    assert (
        format_row(train_config, tokenizer, {"conversations": CONVERSATION}, cfg_keys={"chat_template": "llama3"})
        == want
    )
    # tokenizer_default_fallback_<name>: the tokenizer's own template wins when it has one ...
    assert (
        format_row(
            train_config, tokenizer, {"conversations": CONVERSATION}, chat_template="tokenizer_default_fallback_llama3"
        )
        != want
    )
    # ... and the named template is used when it has none.
    bare = family_tokenizer(LLAMA3.eos, (*LLAMA3.specials, "<bare>"))
    bare.chat_template = None
    assert format_row(
        train_config, bare, {"conversations": CONVERSATION}, chat_template="tokenizer_default_fallback_llama3"
    ) == expected_tokens(bare, LLAMA3.expected)
    with pytest.raises(ConfigError, match=r"datasets\[0\]: the tokenizer has no chat_template"):
        format_row(train_config, bare, {"conversations": CONVERSATION})


@pytest.mark.parametrize(
    ("name", "start"),
    [
        (
            "qwen_25",
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n",
        ),
        ("qwen2_vl", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"),
        (
            "metharme",
            "<s><|system|>Enter RP mode. You shall reply to the user while staying in character. Your "
            "responses must be detailed, creative, immersive, and drive the scenario forward.<|user|>",
        ),
        ("jamba", "<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> "),
        ("exaone", "[|system|][|endofturn|]\n[|user|]"),
    ],
)
def test_templates_without_a_system_turn(name, start, train_config, family_tokenizer):
    tokenizer = family_tokenizer(CASES[name].eos, CASES[name].specials)
    ids, _ = format_row(train_config, tokenizer, {"conversations": CONVERSATION[1:]}, chat_template=name)
    assert tokenizer.decode(ids).startswith(start + Q1)


# --- eot_tokens / train_on_eot (a base model's tokenizer: EOS is not the template's end-of-turn token) ---------

LLAMA3_ANSWERS = (
    f"<s><|start_header_id|>system<|end_header_id|>\n\n{S}<|eot_id|>"
    f"<|start_header_id|>user<|end_header_id|>\n\n{Q1}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n⟦{A1}⟧{{eot1}}"
    f"<|start_header_id|>user<|end_header_id|>\n\n{Q2}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n⟦{A2}⟧{{eot2}}"
)


@pytest.mark.parametrize(
    ("keys", "eot1", "eot2"),
    [
        ({}, "<|eot_id|>", "<|eot_id|>"),  # EOS <|end_of_text|> never occurs: no end of turn is trained
        ({"eot_tokens": ["<|eot_id|>"]}, "⟦<|eot_id|>⟧", "⟦<|eot_id|>⟧"),  # train_on_eot follows train_on_eos: turn
        ({"eot_tokens": ["<|eot_id|>"], "train_on_eot": "last"}, "<|eot_id|>", "⟦<|eot_id|>⟧"),
        ({"eot_tokens": ["<|eot_id|>"], "train_on_eot": "none"}, "<|eot_id|>", "<|eot_id|>"),
        ({"eot_tokens": ["<|eot_id|>", "<|never|>"]}, "⟦<|eot_id|>⟧", "⟦<|eot_id|>⟧"),  # absent from the template
    ],
)
def test_eot_tokens_and_train_on_eot(keys, eot1, eot2, train_config, family_tokenizer):
    tokenizer = family_tokenizer("<|end_of_text|>", (*LLAMA3.specials, "<|eot_id|>", "<|never|>"))
    keys = dict(keys)
    cfg_keys = {"eot_tokens": keys.pop("eot_tokens")} if "eot_tokens" in keys else {}
    warning = (
        r"'<\|never\|>' does not occur in the chat template; ignored"
        if "<|never|>" in str(cfg_keys)
        else r"no end of turn is trained; set eot_tokens: \['<\|eot_id\|>'\]"
        if not cfg_keys
        else None
    )
    with pytest.warns(UserWarning, match=warning) if warning else contextlib.nullcontext():
        got = format_row(
            train_config, tokenizer, {"conversations": CONVERSATION}, cfg_keys=cfg_keys, chat_template="llama3", **keys
        )
    want = expected_tokens(tokenizer, LLAMA3_ANSWERS.format(eot1=eot1, eot2=eot2))
    assert readable(tokenizer, *got) == readable(tokenizer, *want)


def test_eot_tokens_the_template_does_not_write_are_ignored(train_config, family_tokenizer):
    # Mistral v7: [/INST] ends a user turn, EOS ends an answer. train_on_eot: turn trains the end tokens of the
    # trained turns only (none of the [/INST]), train_on_eos: all every EOS.
    # The template writes EOS through `eos_token`, so "</s>" is not in its text: ignored as an eot token (as axolotl
    # does; EOS is still trained as train_on_eos says, and no train_on_eos/train_on_eot conflict arises).
    tokenizer = family_tokenizer("</s>", ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"))
    with pytest.warns(UserWarning, match="'</s>' does not occur in the chat template; ignored"):
        got = format_row(
            train_config,
            tokenizer,
            {"conversations": CONVERSATION},
            train_on_eos="all",
            train_on_eot="turn",
            chat_template="mistral_v7_tekken",
            cfg_keys={"eot_tokens": ["[/INST]", "[/SYSTEM_PROMPT]", "</s>"]},
        )
    want = expected_tokens(
        tokenizer, f"<s>[SYSTEM_PROMPT]{S}[/SYSTEM_PROMPT][INST]{Q1}[/INST]⟦{A1}</s>⟧[INST]{Q2}[/INST]⟦{A2}</s>⟧"
    )
    assert readable(tokenizer, *got) == readable(tokenizer, *want)
    with pytest.warns(UserWarning):
        got = format_row(
            train_config,
            tokenizer,
            {"conversations": CONVERSATION},
            train_on_eot="all",
            chat_template="mistral_v7_tekken",
            cfg_keys={"eot_tokens": ["[/INST]", "</s>"]},
        )
    want = expected_tokens(
        tokenizer, f"<s>[SYSTEM_PROMPT]{S}[/SYSTEM_PROMPT][INST]{Q1}⟦[/INST]⟧⟦{A1}</s>⟧[INST]{Q2}⟦[/INST]⟧⟦{A2}</s>⟧"
    )
    assert readable(tokenizer, *got) == readable(tokenizer, *want)


def test_eot_token_errors_name_the_token(train_config, family_tokenizer):
    tokenizer = family_tokenizer("<|end_of_text|>", LLAMA3.specials)
    with pytest.raises(
        ConfigError,
        match=r"eot_tokens: '<\|eot_id\|>' is \d+ tokens for this tokenizer, not one; "
        r"add it to the vocabulary with tokens:",
    ):
        format_row(
            train_config,
            tokenizer,
            {"conversations": CONVERSATION},
            chat_template="llama3",
            cfg_keys={"eot_tokens": ["<|eot_id|>"]},
        )
    tokenizer = family_tokenizer("<|eot_id|>", LLAMA3.specials)
    with pytest.raises(
        ConfigError,
        match=r"EOS token '<\|eot_id\|>' is in eot_tokens, so train_on_eos \(turn\) "
        r"and train_on_eot \(last\) must be the same",
    ):
        format_row(
            train_config,
            tokenizer,
            {"conversations": CONVERSATION},
            chat_template="llama3",
            train_on_eot="last",
            cfg_keys={"eot_tokens": ["<|eot_id|>", "<|start_header_id|>"]},
        )
    # EOS alone is axolotl's default and goes unchecked: both options apply to the same token (turn wins here).
    got = format_row(
        train_config,
        tokenizer,
        {"conversations": CONVERSATION},
        chat_template="llama3",
        train_on_eot="none",
        cfg_keys={"eot_tokens": ["<|eot_id|>"]},
    )
    assert got == expected_tokens(tokenizer, LLAMA3.expected)


# --- reasoning: a thinking field mapped through message_property_mappings is rendered and trained (as axolotl) ---

THINKING = [*CONVERSATION[:4], {"from": "gpt", "value": A2, "thinking": R}]
REASONING_CASES = {
    "qwen3": (chatml().eos, chatml().specials, chatml(last_prefix="<think>\n⟦" + R + "\n</think>\n\n⟧").expected),
    "exaone4": (
        "[|endofturn|]",
        EXAONE4_SPECIALS,
        EXAONE4_START.removesuffix("\n</think>\n\n") + f"⟦{R}\n</think>\n\n{A2}[|endofturn|]⟧\n",
    ),
    "command_a": (
        COMMAND_A_CASE.eos,
        COMMAND_A_CASE.specials,
        f"<s>{CMD_SYS}{S}{CMD_END}{CMD_USER}{Q1}{CMD_END}{CMD_BOT}<|START_RESPONSE|>⟦{A1}⟧"
        f"<|END_RESPONSE|>⟦{CMD_END}⟧{CMD_USER}{Q2}{CMD_END}{CMD_BOT}⟦<|START_THINKING|>{R}"
        f"<|END_THINKING|><|START_RESPONSE|>{A2}⟧<|END_RESPONSE|>⟦{CMD_END}⟧",
    ),
}


@pytest.mark.parametrize("name", sorted(REASONING_CASES))
def test_mapped_reasoning_is_rendered_and_trained(name, train_config, family_tokenizer):
    eos, specials, expected = REASONING_CASES[name]
    tokenizer = family_tokenizer(eos, specials)
    mappings = {"role": "from", "content": "value", "reasoning_content": "thinking"}
    got = format_row(
        train_config, tokenizer, {"conversations": THINKING}, chat_template=name, message_property_mappings=mappings
    )
    want = expected_tokens(tokenizer, expected)
    assert readable(tokenizer, *got) == readable(tokenizer, *want)
    # Unmapped, a message's own reasoning_content key reaches the template the same way.
    plain = [
        {
            "role": m["from"].replace("human", "user").replace("gpt", "assistant"),
            "content": m["value"],
            **({"reasoning_content": m["thinking"]} if "thinking" in m else {}),
        }
        for m in THINKING
    ]
    assert (
        format_row(
            train_config,
            tokenizer,
            {"messages": plain},
            chat_template=name,
            field_messages="messages",
            message_property_mappings=None,
        )
        == got
    )


# --- the other dataset types, and axolotl's handling of edge rows --------------------------------------------

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers."
    "\n\n### Input:\ntwo and three\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\nAdd the numbers.\n\n### Response:\n"
)


@pytest.mark.parametrize(
    ("row", "keys", "expected"),
    [
        (
            {"instruction": "Add the numbers.", "input": "two and three", "output": "five"},
            {},
            f"<s>{ALPACA_PROMPT}⟦five</s>⟧",
        ),
        ({"instruction": "Add the numbers.", "output": "five"}, {}, f"<s>{ALPACA_NO_INPUT}⟦five</s>⟧"),
        (
            {"instruction": "Add the numbers.", "input": "two and three", "output": "five"},
            {"train_on_inputs": True},
            f"⟦<s>{ALPACA_PROMPT}five</s>⟧",
        ),
        # An empty output gets no EOS (axolotl adds EOS only to a non-empty response): nothing is trained.
        ({"instruction": "Add the numbers.", "output": ""}, {}, f"<s>{ALPACA_NO_INPUT}"),
        # An output that already ends with EOS gets no second one.
        ({"instruction": "Add the numbers.", "output": "five</s>"}, {}, f"<s>{ALPACA_NO_INPUT}⟦five</s>⟧"),
    ],
)
def test_alpaca_pins_input_ids_and_labels(row, keys, expected, train_config, family_tokenizer):
    tokenizer = family_tokenizer("</s>", ())
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "alpaca"}], **keys)
    [got] = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)
    assert readable(tokenizer, *got) == readable(tokenizer, *expected_tokens(tokenizer, expected))


def test_completion_pins_input_ids_and_labels(train_config, family_tokenizer):
    tokenizer = family_tokenizer("</s>", ())
    text = "The cow says moo. The dog says woof."
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "completion"}])
    [got] = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")({"text": text}, 1)
    assert readable(tokenizer, *got) == readable(tokenizer, *expected_tokens(tokenizer, f"⟦<s>{text}</s>⟧"))


def test_pretokenized_labels_are_kept_as_given(train_config, tiny_tokenizer):
    cfg = train_config(datasets=[{"path": "x.jsonl"}])
    formatter = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")
    # Labels in the data are never rewritten, not even where attention_mask marks padding (axolotl uses them as is).
    row = {"input_ids": [1, 5, 6, 0, 0], "labels": [-100, 5, 6, 0, -100], "attention_mask": [1, 1, 1, 0, 0]}
    assert formatter(row, 1) == [([1, 5, 6, 0, 0], [-100, 5, 6, 0, -100])]
    # Without labels every token is trained except the padding the row marks.
    assert formatter({"input_ids": [1, 5, 6, 0], "attention_mask": [1, 1, 1, 0]}, 1) == [
        ([1, 5, 6, 0], [1, 5, 6, -100])
    ]


@pytest.mark.parametrize(
    ("keys", "system_part"),
    [
        ({}, "<|im_start|>system\n<|im_end|>\n"),
        # Even with every end of turn trained, an empty turn has no span and so no end of turn (as axolotl).
        ({"train_on_eos": "all"}, "<|im_start|>system\n<|im_end|>\n"),
    ],
)
def test_empty_system_column_is_an_empty_system_turn(keys, system_part, train_config, family_tokenizer):
    tokenizer = family_tokenizer(chatml().eos, chatml().specials)
    row = {"system": "", "messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}]}
    got = format_row(
        train_config,
        tokenizer,
        row,
        chat_template="chatml",
        field_messages="messages",
        message_property_mappings=None,
        **keys,
    )
    user_eos = "⟦<|im_end|>⟧" if keys else "<|im_end|>"
    expected = f"{system_part}<|im_start|>user\n{Q1}{user_eos}\n<|im_start|>assistant\n⟦{A1}<|im_end|>⟧\n"
    assert readable(tokenizer, *got) == readable(tokenizer, *expected_tokens(tokenizer, expected))


def test_split_thinking_moves_marked_reasoning_into_the_template(train_config, family_tokenizer):
    eos, specials, expected = REASONING_CASES["qwen3"]
    tokenizer = family_tokenizer(eos, specials)
    marked = [*CONVERSATION[:4], {"from": "gpt", "value": f"<think>\n{R}\n</think>\n\n{A2}"}]
    got = format_row(train_config, tokenizer, {"conversations": marked}, chat_template="qwen3", split_thinking=True)
    assert readable(tokenizer, *got) == readable(tokenizer, *expected_tokens(tokenizer, expected))
    solution = [
        *CONVERSATION[:4],
        {
            "from": "gpt",
            "value": f"<|begin_of_thought|>{R}<|end_of_thought|> <|begin_of_solution|> {A2} <|end_of_solution|>",
        },
    ]
    assert (
        format_row(train_config, tokenizer, {"conversations": solution}, chat_template="qwen3", split_thinking=True)
        == got
    )
    # Without split_thinking the markers stay in the content; the Qwen3 template itself takes a <think> block out
    # of an answer (as the published one does), other markers stay as written.
    assert format_row(train_config, tokenizer, {"conversations": marked}, chat_template="qwen3") == got
    plain = format_row(train_config, tokenizer, {"conversations": solution}, chat_template="qwen3")
    assert "<|begin_of_thought|>" in tokenizer.decode(plain[0])
