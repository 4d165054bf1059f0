"""The key policy (core/keys/key_policy.py): keys axolotl lacks too are warnings, near-certain typos are errors,
--strict and launch.strict_keys: true refuse every key that has no effect."""

from __future__ import annotations

import pytest

from hpcft.core.axolotl_keys import axolotl_key_space
from hpcft.core.keys.key_policy import edit_distance, typo_of
from hpcft.core.validation import check_keys

CHAT = {"path": "d.jsonl", "type": "chat_template"}

# Keys people write in their own axolotl configs that axolotl's schema lacks (it drops them without a word).
LEFTOVER_KEYS = (
    "report_to",
    "offload_folder",
    "bnb_4bit_quant_type",
    "eval_datasets",
    "wandb_run_name",
    "lr_scheduler_type",
    "dropout",
    "padding_side",
    "task",
    "logging",
    "use_qlora",
    "sample_packing_size",
    "eval_packing_ratio",
    "push_adapter_to_hub",
)
LEFTOVER_DATASET_KEYS = ("streaming", "train_on_split", "overlap_len", "field_prompt")

DONE_WHEN = """\
base_model: ./model
datasets:
  - path: ./data/chat.jsonl
    type: chat_template
    field_messages: conversations
    message_property_mappings: {role: from, content: value}
output_dir: ./out
report_to: wandb
bnb_4bit_quant_type: nf4
wandb_run_name: x
"""


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("hpcft: warning:")]


@pytest.mark.parametrize("key", LEFTOVER_KEYS)
def test_a_key_axolotl_lacks_too_is_a_warning_and_dropped(key):
    assert key not in axolotl_key_space().top  # else it must be implemented or refused by name instead
    raw = {"base_model": "m", "datasets": [dict(CHAT)], key: "x"}
    warnings = check_keys(raw, "cfg.yaml")
    assert [w for w in warnings if f"'{key}' is not an axolotl key and has no effect" in w], warnings
    assert key not in raw
    with pytest.raises(ValueError, match=f"'{key}'.* is not an axolotl key and would have no effect"):
        check_keys({"base_model": "m", "datasets": [dict(CHAT)], key: "x"}, "cfg.yaml", strict=True)


@pytest.mark.parametrize("key", LEFTOVER_DATASET_KEYS)
def test_a_dataset_key_axolotl_lacks_too_is_a_warning_and_dropped(key):
    assert key not in axolotl_key_space().dataset
    raw = {"base_model": "m", "datasets": [{**CHAT, key: "x"}]}
    warnings = check_keys(raw, "cfg.yaml")
    assert any(f"'datasets[0].{key}' is not an axolotl key and has no effect" in w for w in warnings), warnings
    assert raw["datasets"][0] == CHAT
    with pytest.raises(ValueError, match=rf"'datasets\[0\].{key}'"):
        check_keys({"base_model": "m", "datasets": [{**CHAT, key: "x"}]}, "cfg.yaml", strict=True)


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("micro_batch_sise", "micro_batch_size"),
        ("context_parapllel_size", "context_parallel_size"),
        ("learning_rat", "learning_rate"),
        ("gradient_acumulation_steps", "gradient_accumulation_steps"),
        ("Sequence_len", "sequence_len"),
        ("lora_alhpa", "lora_alpha"),  # two neighbours swapped: one edit
    ],
)
def test_a_near_certain_typo_stays_an_error(key, meant):
    with pytest.raises(ValueError, match=f"unknown key '{key}'; did you mean '{meant}'"):
        check_keys({"base_model": "m", "datasets": [dict(CHAT)], key: 2}, "cfg.yaml")


def test_a_typo_of_a_dataset_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown key 'datasets\[0\].field_mesages'; did you mean 'field_messages'"):
        check_keys({"base_model": "m", "datasets": [{**CHAT, "field_mesages": "m"}]}, "cfg.yaml")


def test_a_near_miss_of_a_key_the_config_sets_is_only_a_warning():
    # Both spellings set: the odd one is a leftover, not the stand-in for the real key.
    raw = {"base_model": "m", "datasets": [dict(CHAT)], "micro_batch_size": 2, "micro_batch_sise": 4}
    warnings = check_keys(raw, "cfg.yaml")
    assert any("'micro_batch_sise' is not an axolotl key" in w for w in warnings)


def test_typo_rule():
    assert edit_distance("micro_batch_sise", "micro_batch_size") == 1
    assert edit_distance("lroa_r", "lora_r") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert typo_of("seqence_len", ["sequence_len"], []) == "sequence_len"
    assert typo_of("lr", ["lr_"], []) is None  # short words are other words, not typos
    assert typo_of("fild", ["field"], []) == "field"
    assert typo_of("dropout", ["lora_dropout"], []) is None
    assert typo_of("sample_len", ["sequence_len"], []) is None  # 10 characters, 3 edits


def test_launch_keys_stay_errors():
    with pytest.raises(ValueError, match="unknown key 'launch.partiton'; did you mean 'partition'"):
        check_keys({"base_model": "m", "datasets": [dict(CHAT)], "launch": {"partiton": "x"}}, "cfg.yaml")
    with pytest.raises(ValueError, match="unknown key 'launch.colour'"):
        check_keys({"base_model": "m", "datasets": [dict(CHAT)], "launch": {"colour": "x"}}, "cfg.yaml")


def test_done_when_validate_warns_once_per_key_and_strict_refuses_all_three(workspace, run_cli):
    cfg = workspace / "users.yaml"
    cfg.write_text(DONE_WHEN)
    result = run_cli("validate", cfg, "--profile", "local", cwd=workspace)
    assert result.code == 0, result.err
    warned = _warnings(result.err)
    for key in ("report_to", "bnb_4bit_quant_type", "wandb_run_name"):
        assert len([w for w in warned if f"'{key}' is not an axolotl key" in w]) == 1, result.err
    assert "did you mean 'wandb_name'" in result.err

    strict = run_cli("validate", cfg, "--profile", "local", "--strict", cwd=workspace)
    assert strict.code == 2
    error = strict.err.strip().splitlines()[-1]
    assert error.startswith("hpcft: error: ") and "Traceback" not in strict.err
    assert all(f"'{key}'" in error for key in ("report_to", "bnb_4bit_quant_type", "wandb_run_name"))

    cfg.write_text(DONE_WHEN + "micro_batch_sise: 2\n")
    typo = run_cli("validate", cfg, "--profile", "local", cwd=workspace)
    assert typo.code == 2 and "did you mean 'micro_batch_size'" in typo.err


def test_launch_strict_keys_in_the_config_or_on_the_command_line(workspace, run_cli):
    cfg = workspace / "users.yaml"
    cfg.write_text(DONE_WHEN + "launch:\n  strict_keys: true\n")
    result = run_cli("validate", cfg, "--profile", "local", cwd=workspace)
    assert result.code == 2 and "'report_to'" in result.err
    cfg.write_text(DONE_WHEN)
    result = run_cli(
        "render", cfg, "--profile", "local", "launch.strict_keys=true", "-o", workspace / "r", cwd=workspace
    )
    assert result.code == 2 and "'wandb_run_name'" in result.err and not (workspace / "r").exists()


def test_render_shows_the_key_warnings_once_before_writing(workspace, run_cli):
    cfg = workspace / "users.yaml"
    cfg.write_text(DONE_WHEN)
    result = run_cli("render", cfg, "--profile", "local", "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    warned = _warnings(result.err)
    assert [w for w in warned if "not an axolotl key" in w] == warned[:3]  # together, first
    assert result.err.count("'report_to'") == 1
    assert "report_to" not in (workspace / "run" / "train.yaml").read_text()


def test_validate_without_profile_prints_the_warnings(workspace, run_cli):
    cfg = workspace / "users.yaml"
    cfg.write_text(DONE_WHEN)
    result = run_cli("validate", cfg, cwd=workspace)
    assert result.code == 0, result.err
    assert len(_warnings(result.err)) == 3
    assert run_cli("validate", cfg, "--strict", cwd=workspace).code == 2


def test_submit_dry_run_shows_the_key_warnings_once_before_anything_is_queued(workspace, run_cli):
    cfg = workspace / "users.yaml"
    cfg.write_text(DONE_WHEN)
    result = run_cli("submit", cfg, "--profile", "local", "--dry-run", "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    assert [result.err.count(f"'{key}' is not an axolotl key") for key in ("report_to", "wandb_run_name")] == [1, 1]
    strict = run_cli("submit", cfg, "--profile", "local", "--strict", "--dry-run", "-o", workspace / "s", cwd=workspace)
    assert strict.code == 2 and not (workspace / "s").exists()
