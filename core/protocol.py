"""The contract between the launcher (login node) and the trainer (compute nodes): environment variable names,
file names in the run and output folders, the checkpoint completion marker and the stop file.

Both sides import these names from here, so a rename cannot drift. Standard library only: the launcher never
imports torch, and the trainer may import this module without pulling in the launcher's dependencies.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Variables job.sbatch (and the submitit backend, and an interactive session) export on every node.
RUN_DIR_ENV = "HPCFT_RUN_DIR"  # the run directory: logs/, stacks/, stop files
TRAIN_YAML_ENV = "HPCFT_TRAIN_YAML"  # the resolved config the trainer reads
PYTHON_ENV = "HPCFT_PYTHON"  # the Python that runs torchrun on the node
NPROC_PER_NODE_ENV = "HPCFT_NPROC_PER_NODE"  # torchrun --nproc_per_node
STOP_FILE_ENV = "HPCFT_STOP_FILE"  # checkpoint and stop when this file exists (time limit near)
HANG_TIMEOUT_ENV = "HPCFT_HANG_TIMEOUT"  # seconds without a completed step before the watchdog ends the job
DONE_FILE_ENV = "HPCFT_DONE_FILE"  # the trainer creates it once the run is finished: the script never requeues then

# Files.
TRAIN_YAML = "train.yaml"
DEEPSPEED_JSON = "deepspeed.json"
MANIFEST = "manifest.json"
METRICS_FILE = "metrics.jsonl"  # in output_dir: one JSON object per logging step
STARTS_FILE = "starts.jsonl"  # in output_dir: one JSON object per training start (first run and each resume)
COMPLETE_MARKER = "hpcft_complete.json"  # in checkpoint-<step>/: written once every rank has saved
FINISHED_MARKER = "hpcft_finished.json"  # in output_dir: the final model is saved, nothing is left to train
STACKS_DIR = "stacks"  # in the run directory: Python stacks dumped by the hang watchdog
# In the run directory: torchrun's --log-dir, one folder per node (<host>/), holding torch elastic's error files.
TORCHELASTIC_DIR = "torchelastic"
WORKER_NOTE = "hpcft-worker.json"  # next to each rank's error.json: its global rank, node rank and host

# The stop file as a shell word (expanded on the node, where SLURM_JOB_ID is known): one file per job id, so a
# requeued job does not see the previous allocation's file.
STOP_FILE_SHELL = '"${HPCFT_RUN_DIR}/stop-${SLURM_JOB_ID}"'
# Created by the trainer once the run is finished (final model saved, or nothing left to train): a time-limit
# signal arriving then must not requeue the job.
DONE_FILE_SHELL = '"${HPCFT_RUN_DIR}/done-${SLURM_JOB_ID}"'


def stop_file(run_dir: str | Path, job_id: str) -> Path:
    """The stop file of one allocation of a job (the same path STOP_FILE_SHELL expands to)."""
    return Path(run_dir) / f"stop-{job_id}"


def stop_file_from_env() -> Path | None:
    value = os.environ.get(STOP_FILE_ENV)
    return Path(value) if value else None


def hang_timeout_from_env() -> float | None:
    """The watchdog timeout in seconds, None when unset or not positive."""
    value = os.environ.get(HANG_TIMEOUT_ENV, "").strip()
    return float(value) if value and float(value) > 0 else None


def run_dir_from_env() -> Path | None:
    value = os.environ.get(RUN_DIR_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class CompleteMarker:
    """What the completion marker of a checkpoint records."""

    step: int
    world_size: int
    time: float


def write_complete_marker(checkpoint: Path, step: int, world_size: int, extra: dict[str, Any] | None = None) -> None:
    """Mark a checkpoint complete; written to a temporary name then renamed, so a reader never sees half of it.
    extra: more to record (the trainer's batch layout and data position, for an elastic resume)."""
    tmp = checkpoint / f".{COMPLETE_MARKER}.tmp"
    data = {**(extra or {}), "step": step, "world_size": world_size, "time": time.time()}
    tmp.write_text(json.dumps(data) + "\n")
    tmp.replace(checkpoint / COMPLETE_MARKER)


def read_complete_marker(checkpoint: Path) -> CompleteMarker | None:
    """The marker of a complete checkpoint; None when the checkpoint is incomplete (or the marker unreadable)."""
    try:
        data = json.loads((checkpoint / COMPLETE_MARKER).read_text())
        return CompleteMarker(int(data["step"]), int(data["world_size"]), float(data.get("time", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_complete(checkpoint: Path) -> bool:
    """A checkpoint is complete when every rank finished writing it (rank 0 then wrote the marker)."""
    return (checkpoint / COMPLETE_MARKER).is_file()


def last_metrics(output_dir: str | Path | None) -> tuple[int | None, float | None]:
    """The last {"step", "loss"} line of <output_dir>/metrics.jsonl (only the file's tail is read)."""
    if not output_dir:
        return None, None
    path = Path(output_dir) / METRICS_FILE
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            tail = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in reversed(tail):
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "loss" in record:
            return record["step"], record["loss"]
    return None, None


def worker_note(environ: dict[str, str]) -> dict[str, object] | None:
    """What the trainer writes next to its error file at start-up (None when torchrun gave it no error file)."""
    error_file = environ.get("TORCHELASTIC_ERROR_FILE")
    if not error_file:
        return None

    def number(name: str) -> int | None:
        value = environ.get(name, "")
        return int(value) if value.strip().isdigit() else None

    import socket

    return {
        "rank": number("RANK"),
        "local_rank": number("LOCAL_RANK"),
        "world_size": number("WORLD_SIZE"),
        # Slurm's name for the node (several slurmd may share one machine in a test cluster).
        "node_rank": number("SLURM_PROCID"),
        "host": environ.get("SLURMD_NODENAME") or socket.gethostname(),
        "job_id": environ.get("SLURM_JOB_ID"),
        "restart": number("SLURM_RESTART_COUNT") or 0,
    }
