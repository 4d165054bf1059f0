"""`peft.loftq_config`: LoftQ initialisation of a LoRA adapter (peft computes it on a CUDA GPU).

LoftQ quantises each targeted weight and fits the adapter's A and B to the quantisation error, so that the
quantised base plus the adapter starts close to the original weights. peft runs it on the GPU only; on a node
without one, hpcft initialises the adapter the standard way (B = 0: the model starts exactly as loaded) and says so.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from peft import LoftQConfig

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def loftq_arguments(cfg: TrainConfig, cuda: bool, scipy: bool | None = None) -> dict[str, Any]:
    """LoraConfig keyword arguments for LoftQ, or none (with a warning) where it cannot run.
    `scipy`: whether scipy, which peft's LoftQ needs, can be imported (default: looked up; NGC images have it)."""
    loftq = cfg.peft.loftq_config if cfg.peft else None
    if loftq is None:
        return {}
    if scipy is None:
        scipy = importlib.util.find_spec("scipy") is not None
    if not cuda or not scipy:
        reason = "runs on a CUDA GPU and there is none" if not cuda else "needs scipy, which is not installed"
        log.warning(
            "peft.loftq_config: LoftQ initialisation %s; initialising LoRA the standard way instead (the "
            "unquantised base weights are kept, the adapter starts at zero)",
            reason,
        )
        return {}
    return {"init_lora_weights": "loftq", "loftq_config": LoftQConfig(loftq_bits=loftq.loftq_bits)}
