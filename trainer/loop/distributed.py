"""Where this process stands in the job (torchrun's variables), and DeepSpeed's process group on CPU."""

from __future__ import annotations

import logging
import os
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.features.deepspeed_config import load_source, resolve_deepspeed
from hpcft.core.features.fsdp import cpu_translation_note, transformers_fsdp_config, zero_preset_for_fsdp
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.elastic import ResumePlan, deepspeed_for_resume

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


def node_ranks_line(environ: dict[str, str] | None = None) -> str | None:
    """What the first process of each node says once in a multi-node job: c10d numbers the nodes itself, so the
    node that holds global rank 0 (the one writing the step lines) need not be Slurm's first task, which `hpcft
    logs` labels /0. None on one node."""
    env = os.environ if environ is None else environ
    nodes = int(env.get("GROUP_WORLD_SIZE", "1"))  # torchrun: the nodes (agents) of the rendezvous
    if nodes <= 1 or env.get("LOCAL_RANK", "0") != "0":
        return None
    first, count = int(env.get("RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", "1"))
    where = env.get("SLURMD_NODENAME") or os.uname().nodename
    ranks = f"global rank {first}" if count == 1 else f"global ranks {first}-{first + count - 1}"
    note = " (rank 0: the step lines come from here)" if first == 0 else ""
    return f"hpcft: {where} is node {env.get('GROUP_RANK', '?')} of {nodes} in the rendezvous, {ranks}{note}"


def sharding_plan(
    cfg: TrainConfig, cuda: bool, quiet: bool = False, resume: ResumePlan | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(DeepSpeed config, transformers fsdp_config) of the run; at most one is set.

    FSDP runs through accelerate on GPUs; on CPU nodes accelerate would silently fall back to DDP, so the
    equivalent ZeRO stage runs instead (core/features/fsdp.py) and the log says so. A rendered train.yaml names
    <run dir>/deepspeed.json, already resolved: resolving returns it unchanged, except on an elastic resume, whose
    batch layout (and universal loading) only the trainer knows.
    """

    def resolved(source: str | dict[str, Any]) -> dict[str, Any]:
        config = load_source(source)
        if resume is not None:
            config = deepspeed_for_resume(config, resume)
        return resolve_deepspeed(config, cfg, world_size())

    if not cfg.uses_fsdp:
        return (resolved(cfg.deepspeed) if cfg.deepspeed else None), None
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
    return resolved(zero_preset_for_fsdp(cfg)), None


def ensure_deepspeed_comm() -> None:
    """Make deepspeed.comm wrap the process group accelerate started. On GPUs accelerate already did; on CPU
    (use_cpu, gloo) it does not, and ZeRO-3's partitioned load would then see a world of 1 and refuse the
    batch sizes. Call after the TrainingArguments exist (they start torch.distributed)."""
    import deepspeed
    import deepspeed.comm

    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed()
