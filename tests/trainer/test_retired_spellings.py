"""Retired axolotl spellings (core/keys/retired_spellings.py) train the same tokens as the modern form their
warning prints: the same row through the formatter, ids and labels equal, token by token."""

from __future__ import annotations

import pytest

from hpcft.core.schema import TrainConfig
from hpcft.core.validation import check_keys
from hpcft.trainer.data.formats import IGNORE_INDEX, make_formatter
from tests.trainer.test_data_formats import CHAT

GUANACO = {
    "conversations": [
        {"role": "prompter", "text": "What is two plus three?"},
        {"role": "assistant", "text": "two plus three is five."},
    ]
}
ROLE = {"conversations": [{"role": m["from"], "value": m["value"]} for m in CHAT["conversations"]]}
CUSTOM_ROLES = {
    "conversations": [
        {"from": {"human": "USER", "gpt": "BOT"}.get(m["from"], m["from"]), "value": m["value"]}
        for m in CHAT["conversations"]
    ]
}

CASES = {
    "sharegpt": (
        {"type": "sharegpt"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
        },
        CHAT,
    ),
    "sharegpt+conversation": (
        {"type": "sharegpt", "conversation": "chatml"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
            "chat_template": "chatml",
        },
        CHAT,
    ),
    "sharegpt:chatml": (
        {"type": "sharegpt:chatml"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
            "chat_template": "chatml",
        },
        CHAT,
    ),
    "sharegpt.load_role": (
        {"type": "sharegpt.load_role"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "role", "content": "value"},
        },
        ROLE,
    ),
    "sharegpt.load_guanaco": (
        {"type": "sharegpt.load_guanaco"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "role", "content": "text"},
            "roles": {"user": ["prompter"], "assistant": ["assistant"]},
        },
        GUANACO,
    ),
    "sharegpt field_human/field_model": (
        {"type": "sharegpt", "field_human": "USER", "field_model": "BOT"},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
            "roles": {"user": ["USER"], "assistant": ["BOT"], "system": ["system"]},
        },
        CUSTOM_ROLES,
    ),
}


def _tokens(cfg: TrainConfig, tokenizer, row: dict) -> tuple[list[int], list[int]]:
    [(ids, labels)] = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)
    return ids, labels


@pytest.mark.parametrize("name", sorted(CASES))
def test_retired_spelling_trains_the_tokens_of_its_modern_form(name, train_config, tiny_tokenizer, tiny_model_dir):
    retired, modern, row = CASES[name]
    raw = {"base_model": str(tiny_model_dir), "chat_template": "chatml", "datasets": [{"path": "d.jsonl", **retired}]}
    warnings = check_keys(raw, "cfg.yaml")
    [warning] = [w for w in warnings if "is a retired axolotl spelling" in w]
    # The warning prints the modern form; it is what the entry became.
    assert raw["datasets"][0] == {"path": "d.jsonl", **modern}
    assert "type: chat_template" in warning and "field_messages: conversations" in warning
    old = _tokens(TrainConfig.model_validate(raw), tiny_tokenizer, row)
    new = _tokens(train_config(datasets=[{"path": "d.jsonl", **modern}], chat_template="chatml"), tiny_tokenizer, row)
    assert old == new
    assert any(label != IGNORE_INDEX for label in old[1])  # the assistant turns are trained


def test_a_sharegpt_loader_without_a_modern_form_is_refused_by_name():
    with pytest.raises(ValueError, match="'type: sharegpt.load_glaive' is a retired axolotl type"):
        check_keys({"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "sharegpt.load_glaive"}]}, "cfg.yaml")
