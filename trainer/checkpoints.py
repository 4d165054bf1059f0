"""Checkpoint policy: when to save, which checkpoint is complete, what to resume from, what to rotate away.

A checkpoint is `<output_dir>/checkpoint-<step>` as the transformers Trainer writes it. It counts as complete
only once `COMPLETE_MARKER` is inside it, and that marker is written by rank 0 after every rank has finished
writing its part (a barrier), so a checkpoint cut off by a crash or a time limit is never resumed from.
Rotation (`save_total_limit`) is ours, not the Trainer's, so that it runs after the marker and only ever deletes
older complete checkpoints and abandoned incomplete ones, never the newest complete one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.launcher.errors import ConfigError
from hpcft.launcher.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

COMPLETE_MARKER = "hpcft_complete.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def steps_per_epoch(num_rows: int, micro_batch_size: int, gradient_accumulation_steps: int, world_size: int) -> int:
    """Optimizer steps in one epoch, counted as the Trainer counts them (last partial batch and step included)."""
    batches_per_rank = math.ceil(num_rows / (micro_batch_size * world_size))
    return max(1, math.ceil(batches_per_rank / gradient_accumulation_steps))


def per_epoch_to_steps(times_per_epoch: int, epoch_steps: int) -> int:
    """`saves_per_epoch`/`evals_per_epoch` as an interval in steps (at least 1, the last one lands on the epoch end)."""
    return max(1, epoch_steps // times_per_epoch)


def save_arguments(cfg: TrainConfig, epoch_steps: int) -> dict[str, Any]:
    """TrainingArguments for saving: strategy and interval from save_steps / saves_per_epoch / save_strategy."""
    if cfg.save_strategy == "no" or cfg.saves_per_epoch == 0:
        return {"save_strategy": "no"}
    if cfg.save_steps:
        return {"save_strategy": "steps", "save_steps": cfg.save_steps}
    if cfg.saves_per_epoch:
        return {"save_strategy": "steps", "save_steps": per_epoch_to_steps(cfg.saves_per_epoch, epoch_steps)}
    return {"save_strategy": cfg.save_strategy or "epoch"}


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-<step>` folder, None for anything else."""
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def is_complete(path: Path) -> bool:
    """A checkpoint is complete when every rank finished writing it (rank 0 then wrote the marker)."""
    return (path / COMPLETE_MARKER).is_file()


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """All `checkpoint-<step>` folders in output_dir, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def find_latest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in output_dir, or None."""
    complete = [p for p in list_checkpoints(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def mark_complete(path: Path, step: int, world_size: int) -> None:
    """Write the completeness marker (rank 0, after the barrier); written to a temp name then renamed."""
    tmp = path / f".{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps({"step": step, "world_size": world_size, "time": time.time()}) + "\n")
    tmp.replace(path / COMPLETE_MARKER)


def rotate_checkpoints(output_dir: str | Path, save_total_limit: int | None) -> list[Path]:
    """Delete complete checkpoints beyond the newest `save_total_limit`, and incomplete ones older than the newest
    complete one (abandoned by a crash). The newest complete checkpoint is never deleted. Returns what was deleted."""
    checkpoints = list_checkpoints(output_dir)
    complete = [p for p in checkpoints if is_complete(p)]
    if not complete:
        return []
    newest_step = checkpoint_step(complete[-1]) or 0
    keep = set(complete[-max(1, save_total_limit):]) if save_total_limit else set(complete)
    doomed = [p for p in checkpoints if p not in keep and (is_complete(p) or (checkpoint_step(p) or 0) < newest_step)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def resolve_resume_checkpoint(cfg: TrainConfig) -> str | None:
    """What to resume from: `resume_from_checkpoint` if given, else (auto_resume_from_checkpoints) the latest
    complete checkpoint in output_dir, else None (a fresh start)."""
    if cfg.resume_from_checkpoint:
        path = Path(cfg.resume_from_checkpoint)
        if not path.is_dir():
            raise ConfigError(f"resume_from_checkpoint: folder not found: {path}")
        if not (path / "trainer_state.json").is_file():
            raise ConfigError(f"resume_from_checkpoint: {path} is not a checkpoint (no trainer_state.json)")
        if not is_complete(path):
            log.warning("resume_from_checkpoint: %s has no %s (not written by hpcft, or cut off)", path, COMPLETE_MARKER)
        return str(path)
    if cfg.auto_resume_from_checkpoints:
        latest = find_latest_complete_checkpoint(cfg.output_dir)
        return str(latest) if latest else None
    return None


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CompleteCheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once every rank has written it, then applies save_total_limit."""

    def __init__(self, save_total_limit: int | None) -> None:
        self.save_total_limit = save_total_limit

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # Leftovers of an interrupted save would otherwise mix with the files of a new save at the same step.
        # No rank can save before rank 0 finishes this: every step needs rank 0 in its collectives.
        if state.is_world_process_zero:
            for path in list_checkpoints(args.output_dir):
                if not is_complete(path):
                    log.warning("removing incomplete checkpoint %s (interrupted save)", path)
                    shutil.rmtree(path, ignore_errors=True)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier()  # every rank has written its shards, optimizer state and RNG state
        if state.is_world_process_zero and path.is_dir():
            mark_complete(path, state.global_step, args.world_size)
            for deleted in rotate_checkpoints(args.output_dir, self.save_total_limit):
                log.info("save_total_limit=%s: deleted %s", self.save_total_limit, deleted)
        _barrier()  # nobody reads the folder list again before the marker and rotation are done
        return control
