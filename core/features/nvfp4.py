"""NVIDIA ModelOpt NVFP4 checkpoints (nvidia/*-NVFP4): detection from the checkpoint's JSON files, and the login-node
checks of a config that trains on one. No torch here: the launcher reads only config.json / hf_quant_config.json.

On disk such a checkpoint stores each quantised linear layer as `weight` (uint8, two e2m1 values per byte),
`weight_scale` (float8_e4m3fn, one per 16 values), `weight_scale_2` (float32, one per tensor) and `input_scale`;
the excluded modules (lm_head, routers, ...) stay 16-bit. transformers 5 cannot load it, so the trainer
(trainer/model/nvfp4_checkpoint.py) dequantises it once to a 16-bit copy and trains LoRA on that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.model_size import find_model_config

GROUP_SIZE = 16


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_nvfp4(settings: Any) -> bool:
    """NVFP4 throughout (quant_algo: NVFP4), or mixed precision with NVFP4 experts (quant_algo: MIXED_PRECISION with
    moe_quant_algo: NVFP4, or NVFP4 among quantized_layers), as NVIDIA's DeepSeek and GLM releases are."""
    if not isinstance(settings, dict):
        return False
    algo = str(settings.get("quant_algo", "")).upper()
    if algo == "NVFP4":
        return True
    layers = settings.get("quantized_layers")
    per_layer = json.dumps(layers).upper() if isinstance(layers, dict) else ""
    moe = str(settings.get("moe_quant_algo", "")).upper()
    return algo == "MIXED_PRECISION" and (moe == "NVFP4" or "NVFP4" in per_layer)


def nvfp4_quantization(folder: str | Path) -> dict[str, Any] | None:
    """The NVFP4 quantisation settings of a ModelOpt checkpoint folder ({quant_algo, group_size, exclude_modules}),
    from config.json's quantization_config or hf_quant_config.json; None for any other checkpoint."""
    folder = Path(folder).expanduser()
    config = _read_json(folder / "config.json") or {}
    found = config.get("quantization_config")
    if not _is_nvfp4(found):
        found = (_read_json(folder / "hf_quant_config.json") or {}).get("quantization")
    if not _is_nvfp4(found):
        return None
    excluded = found.get("exclude_modules", found.get("ignore")) or []
    return {
        "quant_algo": str(found["quant_algo"]).upper(),
        "group_size": int(found.get("group_size") or GROUP_SIZE),
        "exclude_modules": [str(m) for m in excluded],
    }


def nvfp4_base_model(cfg: Any) -> dict[str, Any] | None:
    """The NVFP4 settings when base_model is a ModelOpt NVFP4 checkpoint in a local folder or in the Hugging Face
    cache of this machine (a Hub model not downloaded yet is checked on the node, when it is)."""
    folder = Path(str(cfg.base_model)).expanduser()
    if folder.is_dir():
        return nvfp4_quantization(folder)
    try:
        _, source = find_model_config(str(cfg.base_model))
    except ConfigError:
        return None
    path = Path(source)
    return nvfp4_quantization(path.parent) if path.name == "config.json" and path.is_file() else None


def check_nvfp4_base(cfg: Any) -> list[str]:
    """Login-node check of training on a local NVFP4 base: LoRA only (as axolotl), no bitsandbytes on top of it.
    Returns the warnings to show; raises ConfigError for a combination that cannot train."""
    quant = nvfp4_base_model(cfg)
    if quant is None:
        if cfg.nvfp4_merge_aware and Path(str(cfg.base_model)).expanduser().is_dir():
            raise ConfigError(
                f"nvfp4_merge_aware: base_model {cfg.base_model} is not an NVFP4 (ModelOpt) checkpoint (no "
                f"quantization_config with quant_algo NVFP4), so there is no NVFP4 grid to merge onto; remove it"
            )
        if "nvfp4" in str(cfg.base_model).lower() and not Path(str(cfg.base_model)).expanduser().exists():
            return [
                f"base_model: {cfg.base_model} is not in this machine's Hugging Face cache, so it is checked on the "
                f"node: if it is an NVFP4 (ModelOpt) checkpoint, as its name says, the first run writes a dequantised "
                f"16-bit copy (about 4x its size) next to the cache and trains LoRA on it (adapter: lora needed)"
            ]
        return []
    for key in ("load_in_4bit", "load_in_8bit"):
        if getattr(cfg, key, False):
            raise ConfigError(
                f"{key}: the base_model {cfg.base_model} is already quantised to NVFP4; remove {key} "
                f"(and use adapter: lora)"
            )
    if cfg.adapter != "lora":
        raise ConfigError(
            f"base_model: {cfg.base_model} is an NVFP4 (ModelOpt) checkpoint, which is trained through a LoRA "
            f"adapter: set adapter: lora (full fine-tuning would train a dequantised copy, not the NVFP4 model)"
        )
    return [
        f"base_model: {cfg.base_model} is an NVFP4 (ModelOpt) checkpoint; transformers cannot train on NVFP4 "
        f"weights, so the first run writes a dequantised 16-bit copy (about 4x the checkpoint's size on disk and in "
        f"memory) and trains LoRA on it; a merged model is 16-bit"
    ]


def check_nvfp4_merge_aware(cfg: Any) -> None:
    """nvfp4_merge_aware and its start step, as axolotl checks them (the NVFP4 base itself is checked by
    check_nvfp4_base for a local folder and by the trainer for a Hub model). Raises ValueError."""
    start = cfg.nvfp4_merge_aware_start_step
    if not cfg.nvfp4_merge_aware:
        if start is not None:
            raise ValueError("nvfp4_merge_aware_start_step needs nvfp4_merge_aware: true")
        return
    if cfg.adapter != "lora":
        raise ValueError(
            "nvfp4_merge_aware needs adapter: lora (it rounds the merged LoRA update onto the NVFP4 grid of the base)"
        )
    if cfg.peft_use_dora:
        raise ValueError("nvfp4_merge_aware does not work with peft_use_dora (a DoRA update is not a LoRA merge)")
    bad_float = isinstance(start, float) and not 0 < start < 1
    if start is not None and (isinstance(start, bool) or bad_float or (isinstance(start, int) and start < 0)):
        raise ValueError(
            f"nvfp4_merge_aware_start_step must be an int >= 0 (a step) or a float in (0, 1) (a share of all steps), "
            f"got {start!r}"
        )
