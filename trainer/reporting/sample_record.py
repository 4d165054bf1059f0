"""Which training rows each optimizer step consumed, per rank (HPCFT_RECORD_SAMPLES=<folder>): the evidence that a
resume, also on another world size, neither repeats nor skips a sample.

Each micro-batch the model runs in training appends one line to <folder>/samples-rank<r>.jsonl:
{"step": <the optimizer step it belongs to>, "ids": [<row id>...]}, a row's id being a short hash of its tokens
(rows are packed sequences; the padding rows that repeat leading rows share their ids, as they should).
Recorded at the model's forward, not in the collator: the data loader prefetches batches it may never train on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def row_id(input_ids: torch.Tensor) -> str:
    """A stable id for one training row: the hash of its token ids."""
    return hashlib.sha256(input_ids.to(torch.int64).cpu().numpy().tobytes()).hexdigest()[:12]


class SampleRecorder(TrainerCallback):
    """Tracks the step being trained (a callback) and records each training forward's rows (a forward pre-hook)."""

    def __init__(self, folder: str | Path, rank: int) -> None:
        self.path = Path(folder) / f"samples-rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state: TrainerState | None = None

    @classmethod
    def from_env(cls, rank: int) -> SampleRecorder | None:
        folder = os.environ.get("HPCFT_RECORD_SAMPLES")
        return cls(folder, rank) if folder else None

    def attach(self, model: torch.nn.Module) -> None:
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.state = state
        return control

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids")
        if self.state is None or input_ids is None or not module.training:
            return
        line = {"step": self.state.global_step + 1, "ids": [row_id(row) for row in input_ids]}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")


def read_sample_record(folder: str | Path) -> dict[int, list[str]]:
    """step -> the sorted ids of every row trained in that step, over all ranks and every run that recorded into
    the folder (a step trained twice, or a row consumed twice, shows as repeated ids)."""
    by_step: dict[int, list[str]] = {}
    for path in sorted(Path(folder).glob("samples-rank*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            by_step.setdefault(entry["step"], []).extend(entry["ids"])
    return {step: sorted(ids) for step, ids in sorted(by_step.items())}
