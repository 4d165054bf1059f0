"""What DeepSpeed would reject when it starts on the node, checked from the JSON alone on the login node.

DeepSpeed validates `zero_optimization` and its offload blocks with pydantic models that forbid unknown keys
(deepspeed/runtime/zero/config.py, offload_config.py); the key tables below are those models' field names and
aliases, pinned to the installed DeepSpeed by tests/trainer/test_deepspeed_checks.py. Standard library only.
"""

from __future__ import annotations

import difflib
from typing import Any

ZERO_STAGES = (0, 1, 2, 3)
OFFLOAD_DEVICES = ("none", "cpu", "nvme")

ZERO_KEYS = frozenset(
    {
        "allgather_bucket_size",
        "allgather_partitions",
        "allgather_sequential",
        "compute_grad_norm",
        "contiguous_gradients",
        "cpu_offload",
        "cpu_offload_param",
        "cpu_offload_use_pin_memory",
        "elastic_checkpoint",
        "enable_sanity_checks",
        "gather_16bit_weights_on_model_save",
        "ignore_unused_parameters",
        "leaf_module",
        "legacy_stage1",
        "load_from_fp32_weights",
        "log_trace_cache_warnings",
        "max_live_parameters",
        "max_reuse_distance",
        "memory_efficient_linear",
        "model_persistence_threshold",
        "module_granularity_threshold",
        "offload_optimizer",
        "offload_param",
        "overlap_comm",
        "override_module_apply",
        "param_persistence_threshold",
        "parameter_alignment",
        "pipeline_loading_checkpoint",
        "prefetch_bucket_size",
        "reduce_bucket_size",
        "reduce_scatter",
        "round_robin_gradients",
        "save_muon_momentum_buffer_in_memory",
        "stage",
        "stage3_allgather_sequential",
        "stage3_gather_16bit_weights_on_model_save",
        "stage3_gather_fp16_weights_on_model_save",
        "stage3_max_live_parameters",
        "stage3_max_reuse_distance",
        "stage3_model_persistence_threshold",
        "stage3_module_granularity_threshold",
        "stage3_param_persistence_threshold",
        "stage3_prefetch_bucket_size",
        "stage3_use_all_reduce_for_fetch_params",
        "sub_group_size",
        "use_all_reduce_for_fetch_params",
        "use_multi_rank_bucket_allreduce",
        "zenflow",
        "zero_hpz_partition_size",
        "zero_quantized_gradients",
        "zero_quantized_nontrainable_weights",
        "zero_quantized_weights",
    }
)
OFFLOAD_KEYS = {
    "offload_param": frozenset({"buffer_count", "buffer_size", "device", "max_in_cpu", "nvme_path", "pin_memory"}),
    "offload_optimizer": frozenset(
        {
            "buffer_count",
            "cpuadam_cores_perc",
            "device",
            "fast_init",
            "nvme_path",
            "pin_memory",
            "pipeline_read",
            "pipeline_write",
            "ratio",
            "super_offload",
        }
    ),
}


def _unknown(key: str, known: frozenset[str], where: str) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'?" if close else "DeepSpeed refuses unknown keys there; remove it"
    return f"{where}.{key} is not a DeepSpeed setting; {hint}"


def _offload_problem(name: str, block: Any) -> str | None:
    where = f"zero_optimization.{name}"
    if block is None:
        return None
    if not isinstance(block, dict):
        return f'{where} must be a mapping like {{"device": "cpu"}}'
    for key in block:
        if key not in OFFLOAD_KEYS[name]:
            return _unknown(key, OFFLOAD_KEYS[name], where)
    device = block.get("device", "none")
    if device not in OFFLOAD_DEVICES:
        return f"{where}.device is {device!r}; DeepSpeed offloads to {', '.join(OFFLOAD_DEVICES)}"
    if device == "nvme" and not block.get("nvme_path"):
        return f"{where}: device nvme needs nvme_path (a folder on the node's local NVMe)"
    return None


def _enabled(section: Any) -> bool:
    return isinstance(section, dict) and section.get("enabled") is True


def deepspeed_problem(ds: dict[str, Any]) -> str | None:
    """The first thing in a DeepSpeed config that DeepSpeed would reject at start (None when nothing is)."""
    zero = ds.get("zero_optimization", {})
    if not isinstance(zero, dict):
        return 'zero_optimization must be a mapping like {"stage": 3}'
    stage = zero.get("stage", 0)
    if isinstance(stage, bool) or stage not in ZERO_STAGES:
        return f"zero_optimization.stage is {stage!r}; DeepSpeed's ZeRO stages are 0, 1, 2 and 3"
    for key in zero:
        if key not in ZERO_KEYS:
            return _unknown(key, ZERO_KEYS, "zero_optimization")
    for name in OFFLOAD_KEYS:
        problem = _offload_problem(name, zero.get(name))
        if problem:
            return problem
    for name in ("fp16", "bf16"):
        if name in ds and not isinstance(ds[name], dict):
            return f'{name} must be a mapping like {{"enabled": true}}'
    if _enabled(ds.get("fp16")) and _enabled(ds.get("bf16")):
        return "fp16 and bf16 are both enabled; DeepSpeed runs one of them: enable one"
    return None
