"""tokenizer_use_mistral_common: the mistral-common tokenizer (the tekken file the mistral-common package ships,
as Mistral's Hub models carry it) and label masking on the token ids it renders, pinned token by token."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import make_formatter
from hpcft.trainer.model.loading import load_tokenizer

CONVERSATION = [
    {"from": "system", "value": "Be brief."},
    {"from": "human", "value": "Hi there"},
    {"from": "gpt", "value": "Hello!"},
    {"from": "human", "value": "2+2?"},
    {"from": "gpt", "value": "4"},
]
# What mistral-common renders (tekken v3): the system prompt joins the last user turn, each answer ends with EOS.
TOKENS = ["<s>", "[INST]", "Hi", " there", "[/INST]", "Hello", "!", "</s>"]
TOKENS += ["[INST]", "Be", " brief", ".\n\n", "2", "+", "2", "?", "[/INST]", "4", "</s>"]


@pytest.fixture(scope="module")
def tekken_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tekken")
    shutil.copy(files("mistral_common") / "data" / "tekken_240911.json", folder / "tekken.json")
    return folder


def _config(tekken_dir: Path, **dataset) -> TrainConfig:
    entry = {
        "path": "d.jsonl",
        "type": "chat_template",
        "field_messages": "conversations",
        "message_property_mappings": {"role": "from", "content": "value"},
        **dataset,
    }
    return TrainConfig.model_validate(
        {"base_model": str(tekken_dir), "tokenizer_use_mistral_common": True, "datasets": [entry]}
    )


@pytest.fixture(scope="module")
def tokenizer(tekken_dir):
    return load_tokenizer(_config(tekken_dir))


def _trained(tokenizer, **dataset) -> list[str]:
    cfg = _config(Path("model"), **dataset)  # the formatter reads only the dataset options
    formatter = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")
    ((ids, labels),) = formatter({"conversations": CONVERSATION}, 1)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == TOKENS
    assert all(label in (-100, token) for label, token in zip(labels, ids, strict=True))
    return [token for token, label in zip(tokens, labels, strict=True) if label != -100]


def test_mistral_common_tokenizer_loads_in_fine_tuning_mode(tokenizer):
    assert type(tokenizer).__name__ == "MistralCommonBackend" and tokenizer.mode.value == "finetuning"
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 11)


def test_assistant_turns_and_their_eos_are_trained(tokenizer):
    assert _trained(tokenizer) == ["Hello", "!", "</s>", "4", "</s>"]  # axolotl's defaults: assistant, eos turn


def test_train_on_eos_and_roles_and_inputs(tokenizer):
    assert _trained(tokenizer, train_on_eos="none") == ["Hello", "!", "4"]
    assert _trained(tokenizer, train_on_eos="last") == ["Hello", "!", "4", "</s>"]
    assert _trained(tokenizer, roles_to_train=["user"], train_on_eos="none") == ["Hi", " there", "2", "+", "2", "?"]
    # train_on_inputs: every turn's content, the system prompt's included; the control tokens never.
    assert _trained(tokenizer, train_on_inputs=True) == [t for t in TOKENS if t not in ("<s>", "[INST]", "[/INST]")]


def test_a_conversation_mistral_common_refuses_names_the_row(tokenizer, tekken_dir):
    cfg = _config(tekken_dir)
    formatter = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")
    with pytest.raises(ConfigError, match=r"datasets\[0\]: row 7: mistral-common cannot encode this conversation"):
        formatter({"conversations": CONVERSATION[:-1]}, 7)  # ends with a user turn


def test_a_folder_without_a_mistral_tokenizer_file_is_one_clear_error(tmp_path):
    cfg = TrainConfig.model_validate(
        {"base_model": str(tmp_path), "tokenizer_use_mistral_common": True, "datasets": [{"path": "d"}]}
    )
    with pytest.raises(ConfigError, match="has no mistral-common tokenizer file \\(tekken.json"):
        load_tokenizer(cfg)


def test_a_sentencepiece_mistral_tokenizer_masks_the_same_way(tmp_path):
    """Older Mistral models carry tokenizer.model.v3 (sentencepiece) instead of tekken.json."""
    shutil.copy(
        files("mistral_common") / "data" / "mistral_instruct_tokenizer_240323.model.v3", tmp_path / "tokenizer.model.v3"
    )
    cfg = _config(tmp_path)
    tokenizer = load_tokenizer(cfg)
    formatter = make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")
    ((ids, labels),) = formatter({"conversations": CONVERSATION}, 1)
    trained = [t for t, label in zip(tokenizer.convert_ids_to_tokens(ids), labels, strict=True) if label != -100]
    # The answer "4" is "▁" + "4": the "▁" sentencepiece puts before any content is the frame, not the answer.
    assert trained == ["▁Hello", "!", "</s>", "4", "</s>"]
