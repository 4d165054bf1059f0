"""Shared trainer-test fixtures: the tiny model/tokenizer (built once per session), example data, configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hpcft.core.schema import TrainConfig
from hpcft.trainer.tiny import make_tiny_model

EXAMPLE_DATA = Path(__file__).resolve().parents[2] / "configs" / "examples" / "data"
CHAT_JSONL = EXAMPLE_DATA / "chat.jsonl"
PRETRAIN_JSONL = EXAMPLE_DATA / "pretrain.jsonl"

# The example chat data's dataset entry (the CSCS tutorial's shape: conversations / from / value).
CHAT_DATASET = {
    "path": str(CHAT_JSONL),
    "type": "chat_template",
    "field_messages": "conversations",
    "message_property_mappings": {"role": "from", "content": "value"},
}
PRETRAIN_DATASET = {"path": str(PRETRAIN_JSONL), "ds_type": "json", "type": "completion", "field": "text"}


@pytest.fixture
def chat_dataset() -> dict[str, Any]:
    """The `datasets:` entry of the example chat data (configs/examples/data/chat.jsonl, 200 conversations)."""
    return dict(CHAT_DATASET)


@pytest.fixture
def pretrain_dataset() -> dict[str, Any]:
    """The `datasets:` entry of the example completion data (configs/examples/data/pretrain.jsonl, 150 texts)."""
    return dict(PRETRAIN_DATASET)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random 2-layer Llama and the tiny BPE tokenizer (from_pretrained loads both)."""
    path = tmp_path_factory.mktemp("tiny-model")
    make_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """The tiny tokenizer as training loads it (AutoTokenizer)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> Any:
    """A fresh copy of the tiny model in eval mode (fp32, sdpa)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, list[dict]], Path]:
    """write_jsonl("name.jsonl", rows) -> path of a JSON-lines file in the test's tmp folder."""

    def write(name: str, rows: list[dict]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    return write


@pytest.fixture
def train_config(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """train_config(datasets=[...], **keys) -> a validated TrainConfig on the tiny model, outputs in tmp_path."""

    def make(datasets: list[dict] | None = None, **keys: Any) -> TrainConfig:
        data = {
            "base_model": str(tiny_model_dir),
            "output_dir": str(tmp_path / "out"),
            "dataset_prepared_path": str(tmp_path / "prepared"),
            "datasets": datasets or [CHAT_DATASET],
            **keys,
        }
        return TrainConfig.model_validate(data)

    return make


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random tiny Qwen2.5-VL, its tokenizer and image processor (trainer/tiny_vlm.py)."""
    from hpcft.trainer.tiny_vlm import make_tiny_qwen25_vl

    path = tmp_path_factory.mktemp("tiny-vlm")
    make_tiny_qwen25_vl(path)
    return path
