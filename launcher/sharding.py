"""The sharding file of a run directory: deepspeed.json (the ZeRO config actually used) or fsdp.json."""

from __future__ import annotations

import json

from hpcft.core.errors import ConfigError
from hpcft.core.features.deepspeed_config import default_preset, resolve_deepspeed
from hpcft.core.features.fsdp import transformers_fsdp_config, zero_preset_for_fsdp
from hpcft.core.features.training_loop import runs_plain_ddp
from hpcft.core.schema import TrainConfig


def fsdp_runs_as_zero(cfg: TrainConfig) -> bool:
    """FSDP asked for on a profile without GPUs: the trainer runs the equivalent ZeRO stage (core/features/fsdp.py)."""
    return cfg.uses_fsdp and cfg.launch.gpus_per_node == 0


def sharding_files(cfg: TrainConfig, where: str) -> dict[str, str]:
    """deepspeed.json (the ZeRO config used, also FSDP's CPU translation) or fsdp.json (FSDP on GPUs), for the
    job's world size; built once per command, while the job is checked (config.check_job)."""
    world_size = cfg.launch.nodes * cfg.launch.nproc_per_node
    if runs_plain_ddp(cfg):
        return {}
    if not cfg.uses_fsdp:
        ds = resolve_deepspeed(cfg.deepspeed or default_preset(cfg), cfg, world_size)
        return {"deepspeed.json": json.dumps(ds, indent=2) + "\n"}
    if fsdp_runs_as_zero(cfg):
        ds = resolve_deepspeed(zero_preset_for_fsdp(cfg), cfg, world_size)
        return {"deepspeed.json": json.dumps(ds, indent=2) + "\n"}
    try:
        fsdp = transformers_fsdp_config(cfg)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return {"fsdp.json": json.dumps(fsdp, indent=2) + "\n"}
