"""Fixtures for launcher tests: a config with real (tiny) local inputs, and the CLI run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder with a fake model dir, a chat and a pretraining dataset, and a config that uses them."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    chat = {
        "conversations": [{"from": "user", "value": "Capital of Switzerland?"}, {"from": "assistant", "value": "Bern."}]
    }
    (tmp_path / "data" / "chat.jsonl").write_text(json.dumps(chat) + "\n")
    (tmp_path / "data" / "pretrain.jsonl").write_text(json.dumps({"text": "Lorem ipsum."}) + "\n")
    (tmp_path / "cfg.yaml").write_text(BASE_CONFIG)
    return tmp_path


BASE_CONFIG = """\
base_model: ./model
datasets:
  - path: ./data/chat.jsonl
    type: chat_template
    field_messages: conversations
    message_property_mappings: {role: from, content: value}
  - path: ./data/pretrain.jsonl
    ds_type: json
    type: completion
    field: text
output_dir: ./out
dataset_prepared_path: ./prepared
sequence_len: 512
sample_packing: true
micro_batch_size: 2
gradient_accumulation_steps: 4
learning_rate: 1.0e-5
launch:
  job_name: unit
  time: "02:00:00"
"""


@pytest.fixture(autouse=True)
def _cluster_like_test_folders(cscs_sees_tmp_path, tmp_path, monkeypatch):
    """Test workspaces live under /tmp, which the shipped cscs profile's compute nodes do not see; and a home of
    their own, where the pyxis profile's cache folder is created."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
