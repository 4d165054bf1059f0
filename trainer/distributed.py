"""Where this process stands in the job (torchrun's variables), and DeepSpeed's process group on CPU."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("hpcft.trainer")

def world_size() -> int:
    """Processes in the job (torchrun's WORLD_SIZE; 1 when started without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node: the GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def ensure_deepspeed_comm() -> None:
    """Make deepspeed.comm wrap the process group accelerate started. On GPUs accelerate already did; on CPU
    (use_cpu, gloo) it does not, and ZeRO-3's partitioned load would then see a world of 1 and refuse the
    batch sizes. Call after the TrainingArguments exist (they start torch.distributed)."""
    import deepspeed
    import deepspeed.comm

    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed()
