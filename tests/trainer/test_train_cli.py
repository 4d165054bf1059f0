"""`python -m hpcft.trainer`: make-tiny, preprocess, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def trainer_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcft.trainer", *args], capture_output=True, text=True, timeout=180)


def test_make_tiny_then_preprocess(tmp_path, train_config):
    made = trainer_cli("make-tiny", str(tmp_path / "tiny"))
    assert made.returncode == 0, made.stderr[-2000:]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    assert model.config.num_hidden_layers == 2 and len(AutoTokenizer.from_pretrained(tmp_path / "tiny")) > 100

    cfg = train_config(base_model=str(tmp_path / "tiny"), sequence_len=128, sample_packing=True)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    prepared = trainer_cli("preprocess", str(config))
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert any(Path(cfg.dataset_prepared_path).iterdir())


def test_bad_input_is_one_line_and_exit_2(tmp_path, train_config):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**train_config().training_dict(), "optimizer": "adamw_tourch"}))
    bad = trainer_cli("train", str(config))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"hpcft: error: {config}: key 'optimizer': unknown optimizer 'adamw_tourch'; did you mean 'adamw_torch'? "
        "(common: adamw_torch, adamw_torch_fused, adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit, paged_adamw_32bit, "
        "adafactor, sgd, lion_8bit; any transformers optimizer name works) (got 'adamw_tourch')"
    )
    valid = tmp_path / "valid.yaml"  # the schema refuses the optimizer above before merge-lora could look
    valid.write_text(yaml.safe_dump(train_config().training_dict()))
    no_adapter = trainer_cli("merge-lora", str(valid))
    assert no_adapter.returncode == 2 and "merge-lora: no LoRA adapter" in no_adapter.stderr
    missing = trainer_cli("train", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr
