"""Where this process stands in the job (torchrun's variables) and the DeepSpeed config it trains with."""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from pathlib import Path
from typing import Any

from hpcft.launcher.errors import ConfigError
from hpcft.launcher.fsdp import cpu_translation_note, transformers_fsdp_config, zero_preset_for_fsdp
from hpcft.launcher.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

DEEPSPEED_PRESETS = ("zero1", "zero2", "zero3", "zero3_offload")


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


def load_deepspeed_config(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The DeepSpeed config as a dict from a preset name, a JSON path or an inline mapping (None: no DeepSpeed).

    ZeRO-3 always gets stage3_gather_16bit_weights_on_model_save: without it the final save is an empty
    model file plus shards (axolotl #705/#1223); hpcft's output_dir must load with from_pretrained.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        config = json.loads(json.dumps(value))  # a deep copy
    else:
        if value in DEEPSPEED_PRESETS:
            path = importlib.resources.files("hpcft.configs") / "deepspeed" / f"{value}.json"
        else:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"deepspeed: file not found: {value}; give a JSON file or one of the presets "
                                  f"{', '.join(DEEPSPEED_PRESETS)}")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"deepspeed: {value} is not valid JSON ({exc})") from None
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        log.warning("deepspeed: setting zero_optimization.stage3_gather_16bit_weights_on_model_save=true so the "
                    "final model is saved as whole weights")
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return config


def sharding_plan(cfg: TrainConfig, cuda: bool, quiet: bool = False) -> tuple[dict[str, Any] | None,
                                                                              dict[str, Any] | None]:
    """(DeepSpeed config, transformers fsdp_config) of the run; at most one is set.

    FSDP runs through accelerate on GPUs; on CPU nodes accelerate would silently fall back to DDP, so the
    equivalent ZeRO stage runs instead (launcher/fsdp.py) and the log says so.
    """
    if not cfg.uses_fsdp:
        return load_deepspeed_config(cfg.deepspeed), None
    if cuda:
        try:
            fsdp = transformers_fsdp_config(cfg)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if is_main_process() and not quiet:
            log.info("fsdp: PyTorch FSDP%s through accelerate: %s", fsdp["version"], fsdp)
        return None, fsdp
    if is_main_process() and not quiet:
        log.warning(cpu_translation_note(cfg))
    return load_deepspeed_config(zero_preset_for_fsdp(cfg)), None


def zero_stage(config: dict[str, Any] | None) -> int:
    """The ZeRO stage of a DeepSpeed config (0 without DeepSpeed)."""
    return int((config or {}).get("zero_optimization", {}).get("stage", 0))


def ensure_deepspeed_comm() -> None:
    """Make deepspeed.comm wrap the process group accelerate started. On GPUs accelerate already did; on CPU
    (use_cpu, gloo) it does not, and ZeRO-3's partitioned load would then see a world of 1 and refuse the
    batch sizes. Call after the TrainingArguments exist (they start torch.distributed)."""
    import deepspeed
    import deepspeed.comm

    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed()
