"""The DeepSpeed config: one module resolves presets, files and `auto` values; the trainer uses the rendered
deepspeed.json exactly as it is in the run directory."""

from __future__ import annotations

import json

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.features.deepspeed_config import load_source, resolve_deepspeed, zero_stage
from hpcft.core.yaml_config import load_train_yaml


def test_presets_files_and_inline_mappings(tmp_path, workspace):
    cfg = load_train_yaml_like(workspace)
    zero3 = resolve_deepspeed("zero3", cfg, world_size=2)
    assert zero_stage(zero3) == 3 and zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert zero3["train_batch_size"] == 2 * 4 * 2 and zero3["gradient_accumulation_steps"] == 4
    assert zero_stage(resolve_deepspeed("zero2", cfg, world_size=1)) == 2
    no_gather = {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": False}}
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(no_gather))
    assert resolve_deepspeed(str(path), cfg, 1)["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert resolve_deepspeed(no_gather, cfg, 1)["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert not no_gather["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]  # input untouched
    with pytest.raises(ConfigError, match="key 'deepspeed': file not found"):
        load_source(str(tmp_path / "missing.json"))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_source(str(path))
    with pytest.raises(ConfigError, match="train_micro_batch_size_per_gpu=7 in the DeepSpeed file disagrees"):
        resolve_deepspeed({"train_micro_batch_size_per_gpu": 7}, cfg, 1)


def load_train_yaml_like(workspace):
    from hpcft.launcher.config import load_job

    return load_job(workspace / "cfg.yaml", "local").cfg


def test_rendered_deepspeed_json_is_exactly_what_the_trainer_uses(run_cli, workspace):
    """The trainer resolves train.yaml's deepspeed file through the same function: it must change nothing, also
    for a user file that asks ZeRO-3 not to gather weights (today's trainer flips that at run time only)."""
    user = {
        "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": False},
        "train_micro_batch_size_per_gpu": "auto",
    }
    (workspace / "ds.json").write_text(json.dumps(user))
    out = workspace / "run"
    result = run_cli(
        "render",
        "--profile",
        "local",
        workspace / "cfg.yaml",
        "-o",
        out,
        "--nodes",
        "2",
        "deepspeed=./ds.json",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    rendered = json.loads((out / "deepspeed.json").read_text())
    assert rendered["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    cfg = load_train_yaml(out / "train.yaml")
    assert cfg.deepspeed == str(out / "deepspeed.json")
    assert resolve_deepspeed(cfg.deepspeed, cfg, world_size=2) == rendered
