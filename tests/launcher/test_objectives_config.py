"""Reward models, EAFT and diffusion on the login node: axolotl's example configs validate (their Hub data swapped
for local files), axolotl's defaults are filled in, and what hpcft does differently is said as a warning. The
refusals are in the bad-input corpus (tests/data/bad_inputs: reward_*, prm_*, diffusion_*, eaft_*, cls_model_*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job

AXOLOTL_EXAMPLES = {
    # examples/qwen2/prm.yaml (commit 067b021c), its trl-lib/math_shepherd data swapped for a local file.
    "prm": """\
base_model: ./model
model_type: AutoModelForTokenClassification
num_labels: 2
tokenizer_type: AutoTokenizer
process_reward_model: true
chat_template:
datasets:
  - path: ./data/steps.jsonl
    type: stepwise_supervised
    step_separator: "\\n"
    max_completion_length:
    train_on_last_step_only: false
val_set_size: 0.2
output_dir: ./outputs/out
remove_unused_columns: false
sequence_len: 2048
sample_packing: false
eval_sample_packing: false
gradient_accumulation_steps: 1
micro_batch_size: 8
eval_batch_size: 8
num_epochs: 1
optimizer: adamw_torch
lr_scheduler: cosine
learning_rate: 0.0002
bf16: true
fp16:
tf32:
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: false
attn_implementation: flash_attention_2
warmup_ratio: 0.1
eval_steps: 100
saves_per_epoch: 1
""",
    # examples/gemma2/reward-model.yaml, trimmed to its keys that matter here; no model_type: axolotl's default.
    "reward": """\
base_model: ./model
num_labels: 1
reward_model: true
center_rewards_coefficient: 0.01
chat_template: gemma
datasets:
  - path: ./data/pairs.jsonl
    type: bradley_terry.chat_template
output_dir: ./outputs/out
sequence_len: 2048
sample_packing: false
""",
    # examples/llama-3/diffusion/sft-1b.yaml's diffusion block.
    "diffusion": """\
base_model: ./model
datasets:
  - path: ./data/chat.jsonl
    type: chat_template
    field_messages: conversations
    message_property_mappings: {role: from, content: value}
plugins:
  - axolotl.integrations.diffusion.DiffusionPlugin
diffusion:
  noise_schedule: cosine
  min_mask_ratio: 0.1
  max_mask_ratio: 0.9
  num_diffusion_steps: 128
  eps: 1e-3
  importance_weighting: true
  mask_token_id: 128002
  generate_samples: true
  generation_interval: 250
output_dir: ./out
sample_packing: true
attn_implementation: sdpa
""",
}


@pytest.fixture
def objective_workspace(workspace: Path) -> Path:
    steps = {"prompt": "1 + 1?", "completions": ["1 + 1 = 2."], "labels": [True]}
    pair = {"system": "", "input": "Capital of Switzerland?", "chosen": "Bern.", "rejected": "Zurich."}
    (workspace / "data" / "steps.jsonl").write_text(json.dumps(steps) + "\n")
    (workspace / "data" / "pairs.jsonl").write_text(json.dumps(pair) + "\n")
    return workspace


def _job(workspace: Path, name: str, text: str | None = None):
    path = workspace / f"{name}.yaml"
    path.write_text(AXOLOTL_EXAMPLES[name] if text is None else text)
    return load_job(path, "local")


def test_axolotl_prm_example_validates_with_its_token_classifier(objective_workspace):
    cfg = _job(objective_workspace, "prm").cfg
    assert (cfg.model_type, cfg.num_labels, cfg.process_reward_model) == ("AutoModelForTokenClassification", 2, True)
    entry = cfg.training_dict()["datasets"][0]
    assert entry["type"] == "stepwise_supervised" and entry["step_separator"] == "\n"
    assert entry["train_on_last_step_only"] is False


def test_reward_model_gets_axolotls_sequence_classifier_default(objective_workspace):
    cfg = _job(objective_workspace, "reward").cfg
    assert (cfg.model_type, cfg.num_labels, cfg.center_rewards_coefficient) == (
        "AutoModelForSequenceClassification",
        1,
        0.01,
    )
    # The resolved train.yaml keeps it: the trainer reads the same values.
    assert yaml.safe_load(yaml.safe_dump(cfg.training_dict()))["model_type"] == "AutoModelForSequenceClassification"


def test_diffusion_block_validates_and_says_samples_are_not_printed(objective_workspace):
    job = _job(objective_workspace, "diffusion")
    assert job.cfg.diffusion.mask_token_id == 128002 and job.cfg.diffusion.noise_schedule == "cosine"
    assert any("diffusion.generate_samples" in w for w in job.warnings)
    quiet = AXOLOTL_EXAMPLES["diffusion"].replace("generate_samples: true", "generate_samples: false")
    assert not any("diffusion" in w for w in _job(objective_workspace, "diffusion", quiet).warnings)


def test_eaft_and_cls_model_config_validate(objective_workspace):
    text = AXOLOTL_EXAMPLES["diffusion"].split("plugins:")[0] + (
        "output_dir: ./out\ncls_model_config: Gemma3TextConfig\nuse_eaft: true\neaft_alpha: 1.0\neaft_k: 20\n"
    )
    cfg = _job(objective_workspace, "diffusion", text).cfg
    assert (cfg.use_eaft, cfg.eaft_alpha, cfg.eaft_k, cfg.cls_model_config) == (True, 1.0, 20, "Gemma3TextConfig")
    assert cfg.diffusion is None


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "1 + 1?", "completions": ["1 + 1 = 2.", "Done."], "labels": [True]}, "one label per step"),
        ({"prompt": "1 + 1?", "completions": ["1 + 1 = 2."], "labels": [2]}, r"below num_labels \(2\)"),
        ({"prompt": "1 + 1?", "labels": [True]}, "missing field 'completions'"),
    ],
)
def test_a_bad_stepwise_row_is_named_on_the_login_node(objective_workspace, row, problem):
    (objective_workspace / "data" / "steps.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=problem) as caught:
        _job(objective_workspace, "prm")
    assert "steps.jsonl: row 1" in str(caught.value)
