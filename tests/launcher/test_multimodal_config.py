"""processor_type configs on the login node: axolotl's vision examples validate, audio models and unsupported
combinations are refused by name, and the first rows of a local dataset are read with their images checked."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.features.multimodal import read_row
from hpcft.core.schema import DatasetConfig
from hpcft.launcher.config import load_job

# axolotl's examples/qwen2_5-vl/lora-7b.yaml, with its dataset swapped for a local file.
QWEN25_VL = """\
base_model: {model}
processor_type: AutoProcessor
skip_prepare_dataset: true
remove_unused_columns: false
sample_packing: false
chat_template: qwen2_vl
datasets:
  - path: ./data/vision.jsonl
    type: chat_template
output_dir: ./out
adapter: lora
lora_r: 32
lora_alpha: 16
lora_target_modules: 'model.language_model.layers.[\\d]+.(mlp|cross_attn|self_attn).(up|down|gate|q|k|v|o)_proj'
sequence_len: 8192
micro_batch_size: 1
gradient_accumulation_steps: 4
learning_rate: 0.0002
"""

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def _row(image_part: dict) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [image_part, {"type": "text", "text": "What colour is it?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        ]
    }


def _workspace(tmp_path: Path, rows: list[dict], model_type: str = "qwen2_5_vl", **extra: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": model_type}))
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "red.png").write_bytes(PNG_1PX)
    (tmp_path / "data" / "vision.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = QWEN25_VL.format(model="./model") + "".join(f"{k}: {v}\n" for k, v in extra.items())
    (tmp_path / "cfg.yaml").write_text(text)
    return tmp_path / "cfg.yaml"


def test_the_qwen25_vl_example_validates_with_image_parts_of_every_kind(tmp_path):
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
    rows = [
        _row({"type": "image", "path": "red.png"}),  # relative to the data file's folder
        _row({"type": "image", "url": "https://example.org/red.png"}),  # fetched by the preprocessing job
        _row({"type": "image", "base64": data_uri}),
        {**_row({"type": "image"}), "images": ["red.png"]},  # axolotl's legacy images column
    ]
    job = load_job(_workspace(tmp_path, rows), "local")
    assert job.cfg.processor_type == "AutoProcessor" and job.cfg.sample_packing is False
    assert job.cfg.training_dict()["processor_type"] == "AutoProcessor"  # the node reads the same key


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_row({"type": "image", "path": "missing.png"}), r"vision.jsonl: row 2: image file not found: .*missing.png"),
        (_row({"type": "image", "base64": "not base64!"}), r"vision.jsonl: row 2: base64 image does not decode"),
        (_row({"type": "audio", "path": "a.wav"}), r"row 2, message 0: audio parts are not supported yet"),
        (_row({"type": "picture", "path": "red.png"}), r"row 2, message 0, part 0: 'type' must be text or image"),
        ({"text": "no messages"}, r"row 2: no 'messages' list of messages"),
    ],
)
def test_a_bad_row_is_named_by_file_and_row(tmp_path, row, message):
    config = _workspace(tmp_path, [_row({"type": "image", "path": "red.png"}), row])
    with pytest.raises(ConfigError, match=message):
        load_job(config, "local")


@pytest.mark.parametrize(
    ("model_type", "extra", "message"),
    [
        ("voxtral", {}, r"model_type 'voxtral': audio language models are not supported yet"),
        ("llama", {}, r"has model_type 'llama', not a vision language model hpcft trains"),
        ("qwen2_5_vl", {"sample_packing": "true"}, r"samples with images are not packed .* sample_packing: false"),
        ("qwen2_5_vl", {"processor_type": "'not a class'"}, r"'not a class' is not a processor class"),
        ("qwen2_5_vl", {"streaming": "true", "max_steps": "5"}, r"images are prepared ahead, not streamed"),
        ("qwen2_5_vl", {"do_causal_lm_eval": "true", "val_set_size": "0.5"}, r"do_causal_lm_eval generates from text"),
    ],
)
def test_unsupported_combinations_are_refused_by_name(tmp_path, model_type, extra, message):
    config = _workspace(tmp_path, [_row({"type": "image", "path": "red.png"})], model_type)
    text = config.read_text()
    for key, value in extra.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key}:")) + f"\n{key}: {value}\n"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_job(config, "local")


def test_a_hub_audio_model_is_refused_without_its_config():
    from hpcft.core.features.multimodal import _check_family
    from hpcft.core.schema import TrainConfig

    cfg = TrainConfig.model_validate(
        {"base_model": "mistralai/Voxtral-Mini-3B-2507", "processor_type": "AutoProcessor", "datasets": [{"path": "x"}]}
    )
    with pytest.raises(ConfigError, match="Voxtral-Mini-3B-2507: audio language models are not supported"):
        _check_family(cfg, "cfg.yaml")


def test_rows_read_as_axolotl_reads_them():
    ds = DatasetConfig(path="x", type="chat_template")
    sharegpt = {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        "image": "a.png",
    }
    row = read_row(sharegpt, ds, "row 1")
    # A column image with no image part goes at the end of the first user turn.
    assert row.messages[0] == {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image"}]}
    assert [(i.kind, i.value) for i in row.images] == [("path", "a.png")]
    two = {
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image", "url": "http://h/b.png"}]}],
        "images": [{"bytes": b"PNG", "path": None}],
    }
    assert [(i.kind, i.value) for i in read_row(two, ds, "row 2").images] == [
        ("inline", b"PNG"),
        ("url", "http://h/b.png"),
    ]
    with pytest.raises(ConfigError, match=r"row 3: 2 image parts without path/url/base64 but 1 images"):
        read_row({**two, "messages": [{"role": "user", "content": [{"type": "image"}] * 2}]}, ds, "row 3")


def test_a_hub_vision_model_gets_a_preprocessing_job_even_when_the_cache_cannot_be_checked(tmp_path, monkeypatch):
    from hpcft.launcher.jobs.submit import preprocessing_job_needed

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = _workspace(tmp_path, [_row({"type": "image", "url": "https://example.org/red.png"})])
    config.write_text(config.read_text().replace("base_model: ./model", "base_model: Qwen/Qwen2.5-VL-7B-Instruct"))
    needed, why = preprocessing_job_needed(load_job(config, "local"), sweep=False, backend="sbatch")
    assert needed and why.startswith("processor_type: images are prepared in their own job")
