"""The MoE part of the compatibility slice: axolotl's GLM-4.5-Air QLoRA config (quantize_moe_experts), validated
and trained 2 steps on CPU with a tiny random GLM-4 MoE (fused 3-D experts) and a local file of its data type."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

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
def test_glm45_moe_qlora_config_trains_two_steps_with_quantised_experts(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    bench = _bench()
    case = ROOT / "tests" / "data" / "axolotl_style" / "glm45-air-moe-qlora.yaml"
    config = tmp_path / case.name
    shutil.copy(case, config)
    outcome = bench.validate_one(config, case.name)
    assert outcome.result == "accepted", outcome.detail
    assert bench.model_family(outcome.raw["base_model"]) == "glm4_moe"
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained", detail  # a model without expert weights fails quantize_moe_experts by name
    assert detail.startswith("2 steps, loss ")
    run = tmp_path / "train" / "glm45_air_moe_qlora_yaml"
    trained = yaml.safe_load((run / "train.yaml").read_text())
    assert trained["quantize_moe_experts"] is True and trained["adapter"] == "qlora"
    adapter = json.loads((run / "out" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
