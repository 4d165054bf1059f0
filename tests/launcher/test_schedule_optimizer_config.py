"""cosine_constant_lr_ratio and optimizer: muon on the login node: bad values and combinations are one line naming
the key (exit 2) before anything is queued; Muon renders a plain-DDP job (no DeepSpeed), also from an FSDP config."""

from __future__ import annotations

import re

import pytest
import yaml

from hpcft.core.schema import check_optimizer_name
from hpcft.launcher.config import load_job

from .conftest import BASE_CONFIG


def _config(workspace, text: str):
    path = workspace / "cfg.yaml"
    path.write_text(BASE_CONFIG.replace("launch:\n", text + "launch:\n"))
    return path


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("cosine_constant_lr_ratio: 0.8\n", "set cosine_min_lr_ratio"),
        ("cosine_constant_lr_ratio: 0.8\nlr_scheduler: linear\n", "set lr_scheduler: cosine"),
        ("cosine_constant_lr_ratio: 0.1\ncosine_min_lr_ratio: 0.1\nwarmup_ratio: 0.2\n", "larger than warmup_ratio"),
        ("cosine_constant_lr_ratio: 0.5\ncosine_min_lr_ratio: 0.1\nwarmup_steps: 10\nmax_steps: 20\n", "step 10"),
        ("cosine_constant_lr_ratio: 1.5\ncosine_min_lr_ratio: 0.1\n", "less than or equal to 1"),
        ("optimizer: muon\ndeepspeed: zero2\n", "optimizer: muon .* remove deepspeed"),
        ("optimizer: muon\noptim_args: {momentum: 0.9}\n", "remove optim_args"),
        ("optimizer: muon\nadapter: lora\nlora_target_linear: true\nloraplus_lr_ratio: 16\n", "loraplus_lr_ratio"),
    ],
)
def test_bad_schedule_or_muon_settings_are_one_line_naming_the_key(run_cli, workspace, keys, message):
    result = run_cli("validate", "--profile", "local", _config(workspace, keys), cwd=workspace)
    assert result.code == 2
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if "error" in line]
    assert len(errors) == 1, result.err
    key = "cosine_constant_lr_ratio" if "cosine_constant" in keys else "optimizer"
    assert key in errors[0]
    assert re.search(message, errors[0]), errors[0]


def test_cosine_constant_lr_ratio_zero_is_accepted_as_off(workspace):
    # axolotl's own llama-3 examples write 0 (with cosine_min_lr_ratio: 1.0).
    job = load_job(_config(workspace, "cosine_constant_lr_ratio: 0\ncosine_min_lr_ratio: 1.0\n"), "local")
    assert job.cfg.cosine_constant_lr_ratio == 0


def test_muon_is_an_hpcft_optimizer_now():
    assert check_optimizer_name("muon") == "muon"


def test_muon_renders_plain_ddp_also_from_an_fsdp_config(run_cli, workspace):
    fsdp = (
        "optimizer: muon\nfsdp_version: 2\nfsdp_config:\n  reshard_after_forward: true\n"
        "  activation_checkpointing: true\n"
    )
    config = _config(workspace, fsdp)
    job = load_job(config, "local")
    assert any("runs Muon with plain DDP" in w for w in job.warnings)
    assert not job.cfg.uses_fsdp and job.cfg.gradient_checkpointing is True
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    assert not (workspace / "run" / "deepspeed.json").exists() and not (workspace / "run" / "fsdp.json").exists()
    text = (workspace / "run" / "train.yaml").read_text()
    assert "optimizer: muon: plain DDP, no DeepSpeed" in text
    trained = yaml.safe_load(text)
    assert trained["optimizer"] == "muon" and "deepspeed" not in trained
    assert not trained.get("fsdp_config") and not trained.get("fsdp")
