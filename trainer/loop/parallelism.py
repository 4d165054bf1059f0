"""The parallelism sizes in the trainer (the layout itself is core/features/parallelism.py's, checked on the login
node).

What hands them to the libraries:
- DeepSpeed (also FSDP's CPU translation): tensor_parallel_size is AutoTP and HSDP is ZeRO++ hierarchical
  partitioning, both written into deepspeed.json; context_parallel_size is DeepSpeed Ulysses sequence parallelism
  (ALST), which accelerate sets up from a ParallelismConfig with the deepspeed backend.
- FSDP2 on GPUs: one accelerate ParallelismConfig with the (dp_replicate, dp_shard, cp) mesh; torch runs HSDP and
  ring-attention context parallelism (tensor parallelism with FSDP on GPUs is refused on the login node).
- expert_parallel_size: the expert ranks join the shard group: experts are sharded with the other weights (the
  login node said so).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from transformers import TrainerCallback

from hpcft.core.features.parallelism import ParallelLayout, deepspeed_layout, resolve_layout
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def layout_of(cfg: TrainConfig, world: int) -> ParallelLayout:
    return resolve_layout(cfg, world)


def parallelism_arguments(cfg: TrainConfig, world: int, deepspeed: bool) -> dict[str, Any]:
    """TrainingArguments' `parallelism_config` for the layout ({} when the plain data-parallel run does)."""
    layout = resolve_layout(cfg, world)
    if deepspeed:
        layout = deepspeed_layout(layout)
        if layout.cp == 1:
            return {}  # AutoTP and hpZ are in deepspeed.json
        from accelerate.parallelism_config import ParallelismConfig
        from accelerate.utils import DeepSpeedSequenceParallelConfig

        if cfg.sample_packing and cfg.attention != "flash_attention_2":
            # The launcher unpacks such runs (core/features/parallelism.py); a train.yaml written by hand may not.
            log.warning("sample_packing with context_parallel_size needs flash_attention_2 to keep samples apart")
        # transformers' Ulysses loss gathers with a deprecated torch call and warns on every step of every rank.
        warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_gather is deprecated")
        handler = DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True, sp_attn_implementation=cfg.attention)
        config = ParallelismConfig(
            sp_backend="deepspeed", sp_size=layout.cp, dp_shard_size=layout.data_parallel, sp_handler=handler
        )
        return {"parallelism_config": config}
    if layout.is_plain or (layout.ep > 1 and layout.tp == layout.cp == layout.dp_replicate == 1):
        return {}  # expert ranks alone: plain FSDP over everything
    if not cfg.uses_fsdp:
        # Only a train.yaml run by hand gets here (the launcher always names a DeepSpeed config or FSDP).
        log.warning("parallelism sizes need DeepSpeed or FSDP; this run is plain data parallel")
        return {}
    from accelerate.parallelism_config import ParallelismConfig

    config = ParallelismConfig(
        dp_replicate_size=layout.dp_replicate, dp_shard_size=layout.dp_shard * layout.ep, cp_size=layout.cp
    )
    return {"parallelism_config": config}


class ParallelismReport(TrainerCallback):
    """One log line at the start of training saying how the model is split, read from the model itself."""

    def __init__(self, layout: ParallelLayout) -> None:
        self.layout = layout

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None or not state.is_world_process_zero:
            return
        log.info(describe_split(model, self.layout))


def describe_split(model: Any, layout: ParallelLayout) -> str:
    """`parallelism: ...` with the sizes and, for tensor parallelism, how many layers are split and one example."""
    parts = [
        f"{name} {size}"
        for name, size in (
            ("dp_replicate", layout.dp_replicate),
            ("dp_shard", layout.dp_shard),
            ("tp", layout.tp),
            ("cp", layout.cp),
            ("ep", layout.ep),
        )
        if size > 1
    ]
    line = f"parallelism: {' x '.join(parts) or 'data parallel only'} over {layout.world} processes"
    if layout.tp > 1:
        split = [(name, m) for name, m in model.named_modules() if type(m).__name__ in _TP_LAYERS]
        if split:
            name, module = split[0]
            shape = tuple(module.weight.shape)
            line += f"; {len(split)} linear layers split {layout.tp} ways (e.g. {name}: {shape} on this rank)"
    if layout.hybrid_shard:
        secondary = [p for p in model.parameters() if getattr(p, "ds_secondary_tensor", None) is not None]
        if secondary:
            line += (
                f"; {len(secondary)} weights also keep a shard per group of {layout.dp_shard} processes "
                "(ZeRO++ hpZ: their all-gathers stay inside the group)"
            )
    return line


# DeepSpeed AutoTP's replacements of nn.Linear (column- and row-split).
_TP_LAYERS = ("LinearLayer", "LinearAllreduce")
