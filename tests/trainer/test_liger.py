"""axolotl's Liger plugin and keys: accepted, handed to transformers' Liger switch on a CUDA GPU with the
liger-kernel package, and on CPU a warning and training with the model's own layers."""

from __future__ import annotations

import logging

import pytest

from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.args import Precision, training_arguments
from hpcft.trainer.model.liger import liger_arguments, liger_kernel_config

# The Liger lines of axolotl's examples/llama-3/fft-8b-liger-fsdp.yaml.
AXOLOTL_LIGER = {
    "plugins": ["axolotl.integrations.liger.LigerPlugin"],
    "liger_rope": True,
    "liger_rms_norm": True,
    "liger_glu_activation": True,
    "liger_fused_linear_cross_entropy": True,
}


def config(**keys) -> TrainConfig:
    return TrainConfig.model_validate({"base_model": "m", "datasets": [{"path": "d.jsonl"}], **keys})


def test_kernel_config_names_each_kernel_and_leaves_the_rest_off():
    assert liger_kernel_config(config(**AXOLOTL_LIGER)) == {
        "rope": True,
        "rms_norm": True,
        "swiglu": True,
        "layer_norm": False,
        "cross_entropy": False,
        "fused_linear_cross_entropy": True,
    }
    assert liger_kernel_config(config(liger_swiglu=True))["swiglu"] is True  # axolotl's old spelling


def test_cpu_trains_without_liger_and_says_so(caplog, tmp_path):
    cfg = config(**AXOLOTL_LIGER, output_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        args = training_arguments(cfg, Precision(), None, num_train_rows=8, has_eval=False, world_size=1)
    assert args.use_liger_kernel is False
    assert "liger_rope, liger_rms_norm, liger_glu_activation, liger_fused_linear_cross_entropy" in caplog.text
    assert "there is no CUDA GPU" in caplog.text


def test_gpu_without_the_package_names_it(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        assert liger_arguments(config(liger_rms_norm=True), cuda=True, installed=False) == {}
    assert "liger-kernel package is not installed" in caplog.text


def test_gpu_with_the_package_turns_on_transformers_liger():
    assert liger_arguments(config(liger_rms_norm=True), cuda=True, installed=True) == {
        "use_liger_kernel": True,
        "liger_kernel_config": {
            **dict.fromkeys(["rope", "swiglu", "layer_norm", "cross_entropy", "fused_linear_cross_entropy"], False),
            "rms_norm": True,
        },
    }
    assert liger_arguments(config(), cuda=True, installed=True) == {}


def test_conflicting_liger_keys_are_refused():
    with pytest.raises(ValueError, match="liger_swiglu is the old name of liger_glu_activation"):
        config(liger_swiglu=True, liger_glu_activation=True)
    with pytest.raises(ValueError, match="two ways to compute the same loss"):
        config(liger_cross_entropy=True, liger_fused_linear_cross_entropy=True)


def test_validate_warns_on_a_cpu_profile(run_cli, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n')
    lines = "".join(f"{k}: {str(v).lower()}\n" for k, v in AXOLOTL_LIGER.items() if k != "plugins")
    (tmp_path / "cfg.yaml").write_text(
        "base_model: ./model\ndatasets:\n  - path: ./d.jsonl\n    type: completion\n"
        "plugins:\n  - axolotl.integrations.liger.LigerPlugin\n" + lines
    )
    result = run_cli("validate", "--profile", "local", tmp_path / "cfg.yaml", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "Liger kernels need CUDA GPUs; this profile has none" in result.err
