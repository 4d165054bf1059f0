"""A slice of the compatibility matrix (bench/axolotl_examples.py) on axolotl-style configs kept in tests/data.

Each config's header says what validation must give; the accepted LoRA config is also trained 2 steps on CPU
with its model swapped for a tiny one of the same architecture and its Hub dataset for a local file.
The full matrix over an axolotl checkout is a benchmark: python bench/axolotl_examples.py /path/to/axolotl
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "data" / "axolotl_style").glob("*.yaml"))


def _bench():
    """bench/axolotl_examples.py as a module (bench/ is not a package)."""
    if "axolotl_examples" not in sys.modules:
        spec = importlib.util.spec_from_file_location("axolotl_examples", ROOT / "bench" / "axolotl_examples.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules["axolotl_examples"]


def _expect(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].removeprefix("# expect: ").split(" ", 1)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_axolotl_style_config_is_accepted_or_refused_by_name(case, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / case.name
    shutil.copy(case, config)
    outcome = _bench().validate_one(config, case.name)
    expected = _expect(case)
    if expected[0] == "accepted":
        assert outcome.result == "accepted", outcome.detail
        assert outcome.warnings > 0  # kernel-only keys are named in warnings, never silently dropped
    else:
        result, key = expected[0], expected[1]
        if result == "unknown":
            result, key = "unknown key", key.removeprefix("key ")
        assert (outcome.result, outcome.detail) == (result, key)


def test_stratified_sample_covers_family_adapter_and_data_type():
    bench = _bench()
    outcomes = [
        bench.Outcome(f"{i}.yaml", "text", "accepted", raw=raw)
        for i, raw in enumerate(
            [
                {"base_model": "meta-llama/Llama-3.2-1B", "adapter": "lora", "datasets": [{"type": "alpaca"}]},
                {"base_model": "meta-llama/Llama-3.1-8B", "adapter": "lora", "datasets": [{"type": "alpaca"}]},
                {"base_model": "Qwen/Qwen3-8B", "datasets": [{"type": "chat_template"}]},
                {"base_model": "google/gemma-3-1b-it", "adapter": "qlora", "datasets": [{"type": "chat_template"}]},
                {"base_model": "unknown-family/model", "datasets": [{"type": "completion"}]},
            ]
        )
    ]
    chosen = [o.path for o in bench.stratified_sample(outcomes, limit=10)]
    assert chosen == ["0.yaml", "2.yaml", "3.yaml"]  # 1 adds nothing new; 4 has no tiny model family


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "adapter", "data"),
    [
        ("llama-lora-alpaca", "lora", "alpaca"),
        ("qwen-qlora-chat-liger", "qlora", "chat_template"),
        ("devstral-qlora-mistral-common", "qlora", "chat_template"),
        ("llama3-otel-qlora", "qlora", "alpaca"),  # + metrics endpoint, quadratic warmup, model-only saves, offload
        ("llama-lora-ray", "lora", "alpaca"),  # use_ray / ray_num_workers: Slurm and torchrun start the processes
    ],
)
def test_accepted_config_trains_two_steps_with_a_tiny_model_of_its_family(name, adapter, data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    bench = _bench()
    case = ROOT / "tests" / "data" / "axolotl_style" / f"{name}.yaml"
    config = tmp_path / case.name
    shutil.copy(case, config)
    outcome = bench.validate_one(config, case.name)
    assert outcome.result == "accepted"
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained", detail
    assert detail.startswith("2 steps, loss ")
    run = tmp_path / "train" / f"{name.replace('-', '_')}_yaml"
    trained = yaml.safe_load((run / "train.yaml").read_text())
    assert trained["adapter"] == adapter and trained["datasets"][0]["type"] == data
    # The swapped data keeps the config's own field names (conversations / from / value, human / gpt roles).
    original = yaml.safe_load(case.read_text())["datasets"][0]
    for key in ("field_messages", "message_property_mappings", "roles"):
        if key in original:
            assert trained["datasets"][0][key] == original[key]
    assert (run / "out" / "adapter_config.json").is_file()
    if trained.get("tokenizer_use_mistral_common"):  # the mistral-common tokenizer is saved with the adapter
        assert (run / "out" / "tekken.json").is_file()


def test_the_vision_sample_takes_one_config_per_vision_family():
    bench = _bench()
    bases = [
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen2-VL-7B-Instruct",
        "Qwen/Qwen2.5-VL-3B-Instruct",  # a second Qwen2.5-VL: not taken
        "llava-hf/llava-1.5-7b-hf",
        "google/gemma-3-4b-it",
        "google/gemma-3n-E2B-it",  # Gemma 3n: no tiny build, skipped
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    ]
    outcomes = [
        bench.Outcome(f"{i}.yaml", "multimodal", "accepted", raw={"base_model": b}) for i, b in enumerate(bases)
    ]
    chosen = [bench.vision_family(o.raw["base_model"])[0] for o in bench.vision_sample(outcomes)]
    assert chosen == ["qwen2_5_vl", "qwen2_vl", "llava", "gemma3", "idefics3"]
