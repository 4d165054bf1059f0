"""Label masking per dataset type, token by token, with axolotl's semantics."""

from __future__ import annotations

import json

import datasets
import pytest

from hpcft.core.errors import ConfigError
from hpcft.trainer.data.formats import IGNORE_INDEX, make_formatter, tokenize_dataset

SYSTEM, Q1, A1, Q2, A2 = (
    "You are a tiny assistant.",
    "What is two plus three?",
    "two plus three is five.",
    "What does the cow say?",
    "The cow says moo.",
)
CHAT = {
    "conversations": [
        {"from": "system", "value": SYSTEM},
        {"from": "human", "value": Q1},
        {"from": "gpt", "value": A1},
        {"from": "human", "value": Q2},
        {"from": "gpt", "value": A2},
    ]
}
MAPPED = {
    "type": "chat_template",
    "field_messages": "conversations",
    "message_property_mappings": {"role": "from", "content": "value"},
}
EOS = "<|im_end|>"


def trained_spans(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The trained tokens, decoded as runs of consecutive positions."""
    spans, run = [], []
    for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
        if label != IGNORE_INDEX:
            assert label == token, f"label at {i} is not the input token"
            run.append(token)
        elif run:
            spans.append(run)
            run = []
    spans += [run] if run else []
    return [tokenizer.decode(span) for span in spans]


def format_one(train_config, tokenizer, row: dict, **dataset_keys) -> tuple[list[int], list[int]]:
    cfg = train_config(datasets=[{"path": "unused.jsonl", **dataset_keys}])
    [(ids, labels)] = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)
    return ids, labels


def test_chat_default_trains_assistant_content_and_its_eos(train_config, tiny_tokenizer):
    ids, labels = format_one(train_config, tiny_tokenizer, CHAT, **MAPPED)
    assert (
        ids
        == tiny_tokenizer.apply_chat_template(
            [
                {"role": r, "content": c}
                for r, c in [("system", SYSTEM), ("user", Q1), ("assistant", A1), ("user", Q2), ("assistant", A2)]
            ],
            tokenize=True,
        )["input_ids"]
    )
    assert trained_spans(tiny_tokenizer, ids, labels) == [A1 + EOS, A2 + EOS]
    # Exactly the answer tokens plus one EOS each: nothing of the template (role names, newlines) is trained.
    answer_tokens = sum(len(tiny_tokenizer(a, add_special_tokens=False)["input_ids"]) + 1 for a in (A1, A2))
    assert sum(label != IGNORE_INDEX for label in labels) == answer_tokens


@pytest.mark.parametrize(
    ("train_on_eos", "expected"),
    [
        ("none", [A1, A2]),
        ("last", [A1, A2 + EOS]),
        ("all", [EOS, EOS, A1 + EOS, EOS, A2 + EOS]),
    ],
)
def test_chat_train_on_eos(train_config, tiny_tokenizer, train_on_eos, expected):
    ids, labels = format_one(train_config, tiny_tokenizer, CHAT, train_on_eos=train_on_eos, **MAPPED)
    assert trained_spans(tiny_tokenizer, ids, labels) == expected


@pytest.mark.parametrize(
    ("roles_to_train", "expected"),
    [
        (["human"], [Q1 + EOS, Q2 + EOS]),  # source role names are mapped (human -> user), as axolotl does
        (["assistant", "system"], [SYSTEM + EOS, A1 + EOS, A2 + EOS]),
        (["tool"], []),
    ],
)
def test_chat_roles_to_train(train_config, tiny_tokenizer, roles_to_train, expected):
    ids, labels = format_one(train_config, tiny_tokenizer, CHAT, roles_to_train=roles_to_train, **MAPPED)
    assert trained_spans(tiny_tokenizer, ids, labels) == expected


def test_chat_train_on_inputs_trains_every_turn_content(train_config, tiny_tokenizer):
    ids, labels = format_one(train_config, tiny_tokenizer, CHAT, train_on_inputs=True, **MAPPED)
    assert trained_spans(tiny_tokenizer, ids, labels) == [SYSTEM + EOS, Q1 + EOS, A1 + EOS, Q2 + EOS, A2 + EOS]


def test_chat_default_keys_custom_mappings_and_role_names(train_config, tiny_tokenizer):
    plain = {"messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}]}
    ids, labels = format_one(train_config, tiny_tokenizer, plain, type="chat_template")
    assert trained_spans(tiny_tokenizer, ids, labels) == [A1 + EOS]

    custom = {"dialog": [{"speaker": "person", "text": Q1}, {"speaker": "bot", "text": A1}]}
    ids2, labels2 = format_one(
        train_config,
        tiny_tokenizer,
        custom,
        type="chat_template",
        field_messages="dialog",
        message_property_mappings={"role": "speaker", "content": "text"},
        roles={"user": ["person"], "assistant": ["bot"]},
    )
    assert (ids2, labels2) == (ids, labels)


def test_chat_system_column_and_drop_system_message(train_config, tiny_tokenizer):
    row = {"system": SYSTEM, "messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}]}
    ids, _ = format_one(train_config, tiny_tokenizer, row, type="chat_template")
    assert tiny_tokenizer.decode(ids).startswith("<|im_start|>system\n" + SYSTEM)
    ids, labels = format_one(train_config, tiny_tokenizer, CHAT, drop_system_message=True, **MAPPED)
    assert SYSTEM not in tiny_tokenizer.decode(ids)
    assert trained_spans(tiny_tokenizer, ids, labels) == [A1 + EOS, A2 + EOS]


def test_chat_template_from_config_jinja(train_config, tiny_tokenizer):
    jinja = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}" + EOS + "{% endfor %}"
    ids, labels = format_one(
        train_config, tiny_tokenizer, CHAT, chat_template="jinja", chat_template_jinja=jinja, **MAPPED
    )
    assert tiny_tokenizer.decode(ids).startswith(f"[system] {SYSTEM}{EOS}[user] ")
    assert [s.strip() for s in trained_spans(tiny_tokenizer, ids, labels)] == [A1 + EOS, A2 + EOS]


def test_unknown_chat_template_is_one_clear_error(train_config, tiny_tokenizer):
    # Refused by the schema, so on the login node before anything is queued.
    with pytest.raises(ValueError, match=r"unknown chat_template 'nope'"):
        format_one(train_config, tiny_tokenizer, CHAT, chat_template="nope", **MAPPED)


def test_completion_trains_every_token_and_splits_long_text(train_config, tiny_tokenizer):
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "completion"}], sequence_len=8)
    text = "The cow says moo. The dog says woof. The owl says hoot."
    out = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")({"text": text}, 1)
    full = tiny_tokenizer(text)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert full[0] == tiny_tokenizer.bos_token_id
    assert [ids for ids, _ in out] == [full[i : i + 8] for i in range(0, len(full), 8)]
    assert all(labels == ids for ids, labels in out)


@pytest.mark.parametrize("train_on_inputs", [False, True])
def test_alpaca_prompt_and_masking(train_config, tiny_tokenizer, train_on_inputs):
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "alpaca"}], train_on_inputs=train_on_inputs)
    row = {"instruction": "Add the numbers.", "input": "two and three", "output": "five"}
    [(ids, labels)] = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")(row, 1)
    prompt = (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers."
        "\n\n### Input:\ntwo and three\n\n### Response:\n"
    )
    assert tiny_tokenizer.decode(ids) == "<s>" + prompt + "five" + EOS
    expected = ["<s>" + prompt + "five" + EOS] if train_on_inputs else ["five" + EOS]
    assert trained_spans(tiny_tokenizer, ids, labels) == expected


def test_alpaca_without_input_uses_the_no_input_prompt(train_config, tiny_tokenizer):
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "alpaca"}])
    [(ids, _)] = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "d")({"instruction": "Hi", "output": "Hello"}, 1)
    assert tiny_tokenizer.decode(ids).startswith("<s>Below is an instruction that describes a task. Write")
    assert "### Input:" not in tiny_tokenizer.decode(ids)


def test_pretokenized_passthrough(train_config, tiny_tokenizer):
    cfg = train_config(datasets=[{"path": "x.jsonl"}])
    formatter = make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")
    assert formatter({"input_ids": [1, 5, 6, 7]}, 1) == [([1, 5, 6, 7], [1, 5, 6, 7])]
    assert formatter({"input_ids": [1, 5, 6], "labels": [-100, 5, 6]}, 1) == [([1, 5, 6], [-100, 5, 6])]
    # Padding a pretokenized row carries (attention_mask 0) is never trained.
    assert formatter({"input_ids": [1, 5, 0], "attention_mask": [1, 1, 0]}, 1) == [([1, 5, 0], [1, 5, -100])]


def test_long_and_untrainable_samples_are_dropped_and_counted(train_config, tiny_tokenizer):
    cfg = train_config(sequence_len=40)
    short = {"conversations": [{"from": "human", "value": Q1}, {"from": "gpt", "value": A1}]}
    long = {"conversations": [{"from": "human", "value": Q1 * 6}, {"from": "gpt", "value": A1}]}
    no_answer = {"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": Q1}]}
    rows = datasets.Dataset.from_list([short, long, no_answer, short])
    kept, counts = tokenize_dataset(rows, cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")
    assert dict(counts) == {"kept": 2, "dropped_too_long": 1, "dropped_no_trainable": 1}
    assert len(kept) == 2 and kept.column_names == ["input_ids", "labels"]
    assert all(len(ids) <= 40 for ids in kept["input_ids"])  # dropped, never truncated (axolotl's default)


def test_missing_field_names_dataset_and_row(train_config, tiny_tokenizer):
    cfg = train_config()
    ok = {"conversations": [{"from": "human", "value": Q1}, {"from": "gpt", "value": A1}]}
    rows = datasets.Dataset.from_list([ok, ok, {"conversations": None, "other": "x"}])
    with pytest.raises(ConfigError, match=r"datasets\[0\] \('x'\): row 3: missing field 'conversations'"):
        tokenize_dataset(rows, cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0] ('x')")


def test_missing_message_key_and_completion_field(train_config, tiny_tokenizer):
    cfg = train_config()
    bad = {"conversations": [{"from": "human", "text": Q1}]}
    with pytest.raises(ConfigError, match=r"row 7, message 0: missing key 'value'"):
        make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")(bad, 7)
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "completion", "field": "body"}])
    with pytest.raises(ConfigError, match=r"datasets\[0\]: row 2: missing field 'body'"):
        make_formatter(cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")({"text": "hi"}, 2)


def test_conversation_stored_as_json_string(train_config, tiny_tokenizer):
    as_string = {"conversations": json.dumps(CHAT["conversations"])}
    assert format_one(train_config, tiny_tokenizer, as_string, **MAPPED) == format_one(
        train_config, tiny_tokenizer, CHAT, **MAPPED
    )
    with pytest.raises(ConfigError, match=r"row 1: 'conversations' is a string but not JSON"):
        format_one(train_config, tiny_tokenizer, {"conversations": "[{"}, **MAPPED)
