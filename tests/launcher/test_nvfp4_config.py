"""NVFP4 (ModelOpt) base checkpoints and nvfp4_merge_aware on the login node: a local NVFP4 folder is recognised
(config.json's quantization_config or hf_quant_config.json) and validate says it is dequantised; combinations that
cannot train are one line naming the key (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.features.nvfp4 import nvfp4_quantization
from hpcft.launcher.cli import main
from hpcft.launcher.config import load_job

MODELOPT = {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head"]}


def _nvfp4_model(folder: Path, in_config: bool = True) -> None:
    config = {"model_type": "qwen3_moe"}
    if in_config:
        config["quantization_config"] = {"quant_method": "modelopt", **MODELOPT}
    else:
        (folder / "hf_quant_config.json").write_text(json.dumps({"quantization": MODELOPT}))
    (folder / "config.json").write_text(json.dumps(config))


def _with(workspace: Path, **keys) -> Path:
    config = yaml.safe_load((workspace / "cfg.yaml").read_text())
    config.update(keys)
    path = workspace / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _error(workspace: Path, **keys) -> str:
    with pytest.raises(ConfigError) as err:
        load_job(_with(workspace, **keys), "local")
    message = str(err.value)
    assert "\n" not in message
    return message


LORA = {"adapter": "lora", "lora_target_modules": ["q_proj"]}


@pytest.mark.parametrize("in_config", [True, False])
def test_nvfp4_folder_is_recognised(workspace, in_config):
    _nvfp4_model(workspace / "model", in_config)
    assert nvfp4_quantization(workspace / "model") == {
        "quant_algo": "NVFP4",
        "group_size": 16,
        "exclude_modules": ["lm_head"],
    }
    (workspace / "model" / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "modelopt", "quant_algo": "FP8"}})
    )
    (workspace / "model" / "hf_quant_config.json").unlink(missing_ok=True)
    assert nvfp4_quantization(workspace / "model") is None  # FP8 ModelOpt is not NVFP4


def test_lora_on_an_nvfp4_base_validates_and_says_it_is_dequantised(workspace):
    _nvfp4_model(workspace / "model")
    job = load_job(_with(workspace, nvfp4_merge_aware=True, nvfp4_merge_aware_start_step=0.1, **LORA), "local")
    (note,) = [w for w in job.warnings if "NVFP4 (ModelOpt) checkpoint" in w]
    assert "dequantised 16-bit copy (about 4x" in note and "a merged model is 16-bit" in note
    assert job.cfg.nvfp4_merge_aware is True and job.cfg.nvfp4_merge_aware_start_step == 0.1


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, r"base_model: \S+ is an NVFP4 \(ModelOpt\) checkpoint, which is trained through a LoRA adapter"),
        ({"load_in_8bit": True, **LORA}, r"load_in_8bit: the base_model \S+/model is already quantised to NVFP4"),
        (
            {"load_in_4bit": True, "adapter": "qlora", "lora_target_modules": ["q_proj"]},
            r"load_in_4bit: the base_model \S+/model is already quantised to NVFP4",
        ),
    ],
)
def test_nvfp4_base_combinations_that_cannot_train(workspace, keys, expected):
    _nvfp4_model(workspace / "model")
    assert re.search(expected, _error(workspace, **keys))


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"nvfp4_merge_aware": True, **LORA}, r"nvfp4_merge_aware: base_model \S+/model is not an NVFP4"),
        ({"nvfp4_merge_aware_start_step": 5, **LORA}, "nvfp4_merge_aware_start_step needs nvfp4_merge_aware: true"),
        ({"nvfp4_merge_aware": True}, "nvfp4_merge_aware needs adapter: lora"),
        ({"nvfp4_merge_aware": True, "nvfp4_merge_aware_start_step": 1.5, **LORA}, r"must be an int >= 0"),
        ({"nvfp4_merge_aware": True, "nvfp4_merge_aware_start_step": -1, **LORA}, r"must be an int >= 0"),
    ],
)
def test_merge_aware_mistakes_name_the_key(workspace, keys, expected):
    assert re.search(expected, _error(workspace, **keys))


def test_validate_exits_2_on_full_fine_tuning_of_an_nvfp4_base(workspace, capsys):
    _nvfp4_model(workspace / "model")
    assert main(["validate", str(workspace / "cfg.yaml"), "--profile", "local"]) == 2
    assert "set adapter: lora" in capsys.readouterr().err


def test_hub_nvfp4_model_in_the_local_cache_is_checked_on_the_login_node(workspace, tmp_path, monkeypatch):
    snapshot = tmp_path / "hf" / "hub" / "models--nvidia--Tiny-NVFP4" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    _nvfp4_model(snapshot)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    message = _error(workspace, base_model="nvidia/Tiny-NVFP4")
    assert "base_model: nvidia/Tiny-NVFP4 is an NVFP4 (ModelOpt) checkpoint" in message
    job = load_job(_with(workspace, **LORA), "local")
    assert any("dequantised 16-bit copy" in w for w in job.warnings)


def test_hub_nvfp4_model_not_downloaded_yet_is_announced(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    job = load_job(_with(workspace, base_model="nvidia/Qwen3-30B-A3B-NVFP4", **LORA), "local")
    (note,) = [w for w in job.warnings if "Qwen3-30B-A3B-NVFP4" in w]
    assert "is not in this machine's Hugging Face cache, so it is checked on the node" in note
    job = load_job(_with(workspace, base_model="Qwen/Qwen3-8B"), "local")
    assert not [w for w in job.warnings if "NVFP4" in w]
