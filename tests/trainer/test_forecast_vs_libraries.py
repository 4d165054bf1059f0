"""`hpcft plan`'s figures against the libraries that own them: parameter counts against models transformers
builds from the same config on the meta device (exact), LoRA counts against peft (exact), and model-state memory
against DeepSpeed's own estimators (within 5%)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from hpcft.core.model_size import KNOWN_MODELS, shape_from_config
from hpcft.launcher.estimates.memory_model import Sharding, model_states

LLAMA_1B, LLAMA_8B = "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B"


def meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(**KNOWN_MODELS[name]))


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_parameter_counts_equal_a_model_built_on_the_meta_device(name):
    model = meta_model(name)
    shape = shape_from_config(KNOWN_MODELS[name])
    assert shape.total_parameters == sum(p.numel() for p in model.parameters())  # tied weights counted once
    # DeepSpeed's notion of the largest layer: a module's own parameters, not its children's.
    assert shape.largest_layer_parameters == max(
        sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()
    )


@pytest.mark.parametrize(
    ("targets", "target_linear"),
    [(["q_proj", "v_proj"], False), (["q_proj", "k_proj", "down_proj"], False), (None, True)],
)
def test_lora_parameters_equal_peft(targets, target_linear):
    from peft import LoraConfig, get_peft_model

    shape = shape_from_config(KNOWN_MODELS[LLAMA_1B])
    wanted = shape.lora_targets(targets, target_linear)
    model = get_peft_model(meta_model(LLAMA_1B), LoraConfig(r=16, target_modules=wanted))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shape.lora_parameters(16, wanted) == trainable


def deepspeed_table(estimator, *args, **kwargs) -> dict[str, tuple[float, float]]:
    """Run one of DeepSpeed's *_all_cold estimators and read its printed table: options -> (CPU, GPU) bytes."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        estimator(*args, **kwargs)
    rows = {}
    for line in out.getvalue().splitlines():
        match = re.match(r"\s*([\d.]+)GB \|\s*([\d.]+)GB \| (.*)$", line)
        if match:
            options = re.sub(r"\s+|OffloadDeviceEnum\.", "", match.group(3))  # enum repr in some versions
            rows[options] = (float(match.group(1)) * 2**30, float(match.group(2)) * 2**30)
    return rows


@pytest.mark.parametrize("name", [LLAMA_1B, LLAMA_8B])
@pytest.mark.parametrize(("nodes", "gpus_per_node"), [(1, 4), (4, 4)])
def test_model_state_memory_matches_deepspeeds_estimators(name, nodes, gpus_per_node):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_cold

    shape = shape_from_config(KNOWN_MODELS[name])
    total, largest = shape.total_parameters, shape.largest_layer_parameters

    def ours(stage: int, offload_optimizer: bool, offload_params: bool):
        return model_states(total, 0, largest, Sharding(stage, offload_optimizer, offload_params, gpus_per_node, nodes))

    zero2 = deepspeed_table(
        estimate_zero2_model_states_mem_needs_all_cold, total, num_gpus_per_node=gpus_per_node, num_nodes=nodes
    )
    zero3 = deepspeed_table(
        estimate_zero3_model_states_mem_needs_all_cold, total, largest, num_gpus_per_node=gpus_per_node, num_nodes=nodes
    )
    cases = [  # (our states, DeepSpeed's row, compare CPU memory too)
        (ours(2, False, False), zero2["offload_optimizer=none"], False),
        (ours(2, True, False), zero2["offload_optimizer=cpu"], False),
        (ours(3, False, False), zero3["offload_param=none,offload_optimizer=none,zero_init=1"], False),
        (ours(3, True, False), zero3["offload_param=none,offload_optimizer=cpu,zero_init=1"], True),
        (ours(3, True, True), zero3["offload_param=cpu,offload_optimizer=cpu,zero_init=1"], True),
    ]
    for states, (ds_cpu, ds_gpu), check_cpu in cases:
        assert states.gpu_total == pytest.approx(ds_gpu, rel=0.05)
        if check_cpu:
            assert states.cpu_per_node == pytest.approx(ds_cpu, rel=0.05)
