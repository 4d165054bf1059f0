"""The launcher's DeepSpeed checks (core/checks/deepspeed_checks.py) against DeepSpeed's own config models."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
from deepspeed.runtime.zero.offload_config import DeepSpeedZeroOffloadOptimizerConfig, DeepSpeedZeroOffloadParamConfig
from pydantic import BaseModel, ValidationError

from hpcft.core.checks.deepspeed_checks import OFFLOAD_KEYS, ZERO_KEYS, deepspeed_problem
from hpcft.core.features.deepspeed_config import PRESETS


def _names(model: type[BaseModel]) -> set[str]:
    return {name for n, field in model.model_fields.items() for name in (n, field.alias) if name}


def test_key_tables_are_deepspeeds_models():
    assert set(ZERO_KEYS) == _names(DeepSpeedZeroConfig)
    assert set(OFFLOAD_KEYS["offload_param"]) == _names(DeepSpeedZeroOffloadParamConfig)
    assert set(OFFLOAD_KEYS["offload_optimizer"]) == _names(DeepSpeedZeroOffloadOptimizerConfig)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_pass(preset):
    ds = json.loads((resources.files("hpcft.configs") / "deepspeed" / f"{preset}.json").read_text())
    assert deepspeed_problem(ds) is None
    DeepSpeedZeroConfig(**ds["zero_optimization"])


@pytest.mark.parametrize(
    "zero",
    [
        {"stage": 7},
        {"stage": "three"},
        {"stage": 3, "stage3_gather_16bit_weights_on_model_sav": True},
        {"stage": 3, "offload_param": {"device": "gpu"}},
        {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memry": True}},
    ],
)
def test_what_the_launcher_refuses_deepspeed_refuses_too(zero):
    assert deepspeed_problem({"zero_optimization": zero}) is not None
    with pytest.raises(ValidationError):
        DeepSpeedZeroConfig(**zero)
