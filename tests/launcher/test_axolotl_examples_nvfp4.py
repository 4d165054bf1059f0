"""The NVFP4 part of the compatibility slice: axolotl's Qwen3-30B-A3B NVFP4 LoRA config (nvfp4_merge_aware, LoRA on
attention and on the experts) validated and trained 2 steps on CPU, with the NVIDIA release swapped for a tiny
random Qwen3-MoE stored in the same ModelOpt NVFP4 layout, and a local file of its data type."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    """bench/axolotl_examples.py as a module (bench/ is not a package)."""
    if "axolotl_examples" not in sys.modules:
        spec = importlib.util.spec_from_file_location("axolotl_examples", ROOT / "bench" / "axolotl_examples.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules["axolotl_examples"]


@pytest.mark.slow
def test_qwen3_nvfp4_merge_aware_config_trains_two_steps_on_an_nvfp4_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the dequantised copy goes next to the HF cache
    bench = _bench()
    case = ROOT / "tests" / "data" / "axolotl_style" / "qwen3-30b-nvfp4-merge-aware-lora.yaml"
    config = tmp_path / case.name
    shutil.copy(case, config)
    outcome = bench.validate_one(config, case.name)
    assert outcome.result == "accepted", outcome.detail
    assert bench.model_family(outcome.raw["base_model"]) == "qwen3_moe"
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained", detail
    assert detail.startswith("2 steps, loss ")
    (copy,) = (tmp_path / "hf" / "hpcft-dequantized").iterdir()  # the NVFP4 checkpoint was really dequantised
    assert json.loads((copy / "nvfp4_scales.json").read_text())
    run = tmp_path / "train" / "qwen3_30b_nvfp4_merge_aware_lora_yaml"
    adapter = json.loads((run / "out" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert sorted(adapter["target_parameters"]) == [
        f"model.layers.{i}.mlp.experts.{p}" for i in (0, 1) for p in ("down_proj", "gate_up_proj")
    ]
