"""Checkpoint policy: which checkpoint is complete, what to resume from, what to rotate away.

A checkpoint is `<output_dir>/checkpoint-<step>` as the transformers Trainer writes it. It counts as complete
only once `COMPLETE_MARKER` is inside it, and that marker is written by rank 0 after every rank has finished
writing its part (a barrier), so a checkpoint cut off by a crash or a time limit is never resumed from.
Rotation (`save_total_limit`) is ours, not the Trainer's (which sorts by mtime and knows no markers), so that it
runs after the marker and only ever deletes older checkpoints, never the newest complete one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from pathlib import Path

import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.checks.resume_checkpoint import resume_checkpoint_problem
from hpcft.core.errors import ConfigError
from hpcft.core.features.training_loop import has_optimizer_state
from hpcft.core.protocol import COMPLETE_MARKER, FINISHED_MARKER, is_complete, write_complete_marker
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.distributed import rank
from hpcft.trainer.loop.elastic import BatchLayout, checkpoint_metadata

log = logging.getLogger("hpcft.trainer")

__all__ = ["COMPLETE_MARKER", "is_complete"]  # re-exported from the protocol: tests and tools look for them here
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-<step>` folder, None for anything else."""
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


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


def mark_complete(
    path: Path, step: int, world_size: int, micro_batch_size: int = 1, gradient_accumulation_steps: int = 1
) -> None:
    """Write the completeness marker (rank 0, after the barrier) with the batch layout and data position that an
    elastic resume needs."""
    layout = BatchLayout(world_size, micro_batch_size, gradient_accumulation_steps)
    write_complete_marker(path, step, world_size, extra=checkpoint_metadata(layout, step))


def mark_finished(output_dir: str | Path, step: int) -> None:
    """Record in output_dir that training reached its last step and the final model is saved there."""
    path = Path(output_dir) / FINISHED_MARKER
    tmp = path.with_name(f".{FINISHED_MARKER}.tmp")
    tmp.write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
    tmp.replace(path)


def finished_step(output_dir: str | Path) -> int | None:
    """The step at which a run in output_dir finished (its final model is saved), None if it has not."""
    path = Path(output_dir) / FINISHED_MARKER
    return int(json.loads(path.read_text())["step"]) if path.is_file() else None


def trained_steps(cfg: TrainConfig, checkpoint: str | Path) -> tuple[int, int]:
    """(the checkpoint's step, the step this run trains to): the config's max_steps, else the count the checkpoint's
    run computed from its epochs (0 when unknown). A checkpoint at or past the last step must train nothing."""
    state = Path(checkpoint) / "trainer_state.json"
    saved = json.loads(state.read_text()) if state.is_file() else {}
    return int(saved.get("global_step", 0)), cfg.max_steps or int(saved.get("max_steps") or 0)


# Files of a checkpoint that are training state, not the model: not copied when a finished checkpoint becomes the
# final model.
_TRAINING_STATE = re.compile(
    r"^(trainer_state\.json|training_args\.bin|optimizer.*|scheduler.*|rng_state.*|"
    r"scaler\.pt|latest.*|zero_to_.*\.py|hpcft_.*|\..*)$"
)


def finish_from_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> list[str]:
    """Make output_dir's final model from a checkpoint written at the last step (the run ended after saving it but
    before its final save): copy the model/adapter, config and tokenizer files, train nothing. Returns the names."""
    copied = []
    for path in sorted(Path(checkpoint).iterdir()):
        if path.is_file() and not _TRAINING_STATE.match(path.name):
            shutil.copy2(path, Path(output_dir) / path.name)
            copied.append(path.name)
    check_saved_weights(Path(output_dir))
    return copied


def rotate_checkpoints(
    output_dir: str | Path, save_total_limit: int | None, best: str | Path | None = None
) -> list[Path]:
    """Apply save_total_limit: delete complete checkpoints beyond the newest `save_total_limit`, and incomplete
    ones older than the newest complete one (abandoned by a crash). The newest complete checkpoint, the best one
    (metric_for_best_model) and any newer (possibly being written) folder are never deleted. Without a limit nothing
    is deleted. Returns the deleted."""
    if not save_total_limit:
        return []
    checkpoints = list_checkpoints(output_dir)
    complete = [p for p in checkpoints if is_complete(p)]
    if not complete:
        return []
    newest_step = checkpoint_step(complete[-1]) or 0
    keep = set(complete[-save_total_limit:]) | {p for p in complete if best and p.name == Path(best).name}
    doomed = [p for p in checkpoints if p not in keep and (checkpoint_step(p) or 0) < newest_step]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def resolve_resume_checkpoint(cfg: TrainConfig) -> str | None:
    """What to resume from: `resume_from_checkpoint` if given, else (auto_resume_from_checkpoints) the latest
    complete checkpoint in output_dir, else None (a fresh start)."""
    if cfg.resume_from_checkpoint:
        path = Path(cfg.resume_from_checkpoint)
        problem = resume_checkpoint_problem(path)
        if problem:
            raise ConfigError(f"resume_from_checkpoint: {problem}")
        if not is_complete(path):
            log.warning(
                "resume_from_checkpoint: %s has no %s (not written by hpcft, or cut off)", path, COMPLETE_MARKER
            )
        return str(path)
    if cfg.auto_resume_from_checkpoints:
        latest = find_latest_complete_checkpoint(cfg.output_dir)
        if latest and cfg.save_only_model and not has_optimizer_state(latest):
            step, last = trained_steps(cfg, latest)
            if step >= last > 0:
                return str(latest)  # at the last step: the final model is made from its weights, nothing resumes
            return resume_past_model_only_checkpoints(cfg.output_dir)
        return str(latest) if latest else None
    return None


def resume_past_model_only_checkpoints(output_dir: str | Path) -> str | None:
    """save_only_model: the newest checkpoints hold no optimizer state and cannot be resumed. Resume from the newest
    complete one that can (the save at the time limit keeps its optimizer state), else train again from step 0.
    The newer model-only ones lose their completion marker (rank 0), so that the new run's saves, which reuse their
    folder names, are never mistaken for complete while they are written."""
    complete = [p for p in list_checkpoints(output_dir) if is_complete(p)]
    resumable = next((p for p in reversed(complete) if has_optimizer_state(p)), None)
    start = checkpoint_step(resumable) if resumable else 0
    if rank() == 0:
        for path in complete:
            if (checkpoint_step(path) or 0) > (start or 0):
                (path / COMPLETE_MARKER).unlink(missing_ok=True)
        log.warning(
            "save_only_model: the newest checkpoints in %s hold no optimizer state and cannot be resumed: %s (they "
            "are overwritten as the run saves)",
            output_dir,
            f"resuming from {resumable.name}" if resumable else "training again from step 0",
        )
    _barrier()
    return str(resumable) if resumable else None


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CompleteCheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once every rank has written it, then applies save_total_limit."""

    def __init__(self, save_total_limit: int | None) -> None:
        self.save_total_limit = save_total_limit
        self._step_ended = time.monotonic()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._step_ended = time.monotonic()  # a save starts after the step ends: time it from here
        if control.should_save and state.is_world_process_zero:
            # Saving a large model takes minutes: say so before, not only after.
            print(f"hpcft: saving checkpoint-{state.global_step} ...", flush=True)
        return control

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # An interrupted save after the step we start from would mix its files with the new save at that step.
        # No rank can save before rank 0 finishes this: every step needs rank 0 in its collectives.
        if state.is_world_process_zero:
            for path in list_checkpoints(args.output_dir):
                if not is_complete(path) and (checkpoint_step(path) or 0) > state.global_step:
                    log.warning("removing incomplete checkpoint %s (interrupted save)", path)
                    shutil.rmtree(path, ignore_errors=True)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier()  # every rank has written its shards, optimizer state and RNG state
        if state.is_world_process_zero and path.is_dir():
            mark_complete(
                path,
                state.global_step,
                args.world_size,
                args.per_device_train_batch_size,
                args.gradient_accumulation_steps,
            )
            print(
                f"hpcft: saved {path.name} ({time.monotonic() - self._step_ended:.1f} s, all "
                f"{args.world_size} rank(s))",
                flush=True,
            )
            for deleted in rotate_checkpoints(args.output_dir, self.save_total_limit, state.best_model_checkpoint):
                log.info("save_total_limit=%s: deleted %s", self.save_total_limit, deleted)
        _barrier()  # nobody reads the folder list again before the marker and rotation are done
        return control


def check_saved_weights(model_dir: Path) -> int:
    """Fail loudly if a saved model/adapter has no weights or an empty tensor (the axolotl #705/#1223 ZeRO-3 bug:
    an 'empty' save that only breaks when someone loads it). Returns the number of saved parameters."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("adapter_model*.safetensors")) or sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise RuntimeError(f"no model weights (*.safetensors) were saved in {model_dir}")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                count = math.prod(handle.get_slice(name).get_shape())
                if count == 0:
                    raise RuntimeError(f"saved weight {name} in {file} is empty (a ZeRO-3 partition was not gathered)")
                total += count
    if total == 0:
        raise RuntimeError(f"the weights saved in {model_dir} are empty")
    return total
