"""axolotl's Liger keys (`liger_rope`, `liger_rms_norm`, ...) as transformers' own Liger switch.

Liger's kernels are Triton code for CUDA GPUs. They change speed and memory, not the model's math, so on a
node without a GPU (or without the liger-kernel package) hpcft trains with the model's own layers and says so.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from hpcft.core.schema import LIGER_KEYS, TrainConfig

log = logging.getLogger("hpcft.trainer")


def liger_kernel_config(cfg: TrainConfig) -> dict[str, bool]:
    """The kernels asked for, every other one off (liger's own defaults turn most on; axolotl's do not)."""
    return {kwarg: bool(getattr(cfg, key)) for key, kwarg in LIGER_KEYS.items()}


def liger_arguments(cfg: TrainConfig, cuda: bool, installed: bool | None = None) -> dict[str, Any]:
    """TrainingArguments keys that apply the Liger kernels, or none (with a warning) where they cannot run.
    `installed`: whether liger-kernel can be imported (default: looked up)."""
    wanted = [key for key in LIGER_KEYS if getattr(cfg, key)]
    if not wanted:
        return {}
    if installed is None:
        installed = importlib.util.find_spec("liger_kernel") is not None
    if not cuda:
        reason = "there is no CUDA GPU"
    elif not installed:
        reason = "the liger-kernel package is not installed (pip install 'hpcft[gpu]', or use the hpcft image)"
    else:
        return {"use_liger_kernel": True, "liger_kernel_config": liger_kernel_config(cfg)}
    log.warning(
        "%s: Liger kernels need a CUDA GPU and the liger-kernel package, but %s; training with the model's "
        "own layers (same results, more memory)",
        ", ".join(wanted),
        reason,
    )
    return {}
