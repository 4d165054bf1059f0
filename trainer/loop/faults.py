"""Step-boundary hooks for reliability: fault injection (crash, hang, slow steps) and the graceful stop file.

Environment (read once when the run starts):
  HPCFT_FAULT_CRASH_AT_STEP=N  raise after optimizer step N (before its checkpoint), on HPCFT_FAULT_RANK
  HPCFT_FAULT_HANG_AT_STEP=N   sleep forever after step N, on HPCFT_FAULT_RANK
  HPCFT_FAULT_KILL_IN_SAVE_AT_STEP=N  SIGKILL the process while checkpoint-N is being saved: its files are
                               written but not every rank has confirmed them, so it is never marked complete
  HPCFT_FAULT_RANK=r           the global rank the three faults above hit (unset: every rank)
  HPCFT_FAULT_STEP_SLEEP=s     sleep s seconds after every step (every rank)
  HPCFT_FAULT_AWAIT_STOP_AT_END=s  once training has ended, wait (up to s seconds) for the stop file before the
                               final save (every rank): the time limit's signal then arrives while the run is
                               finishing, on purpose rather than by timing
  HPCFT_STOP_FILE=path         when this file exists at a step boundary: checkpoint, stop, exit 0
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.protocol import stop_file_from_env

log = logging.getLogger("hpcft.trainer")


class InjectedFault(RuntimeError):
    """Raised by HPCFT_FAULT_CRASH_AT_STEP: a deliberate crash for reliability tests."""


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


@dataclass
class FaultInjectionCallback(TrainerCallback):
    """Crashes, hangs or slows the run at chosen steps so the launcher's recovery paths can be tested."""

    crash_at_step: int | None = None
    hang_at_step: int | None = None
    rank: int | None = None
    step_sleep: float = 0.0
    kill_in_save_at_step: int | None = None
    await_stop_at_end: float = 0.0

    @classmethod
    def from_env(cls) -> FaultInjectionCallback | None:
        """The callback configured by the HPCFT_FAULT_* variables, or None when none is set."""
        fault = cls(
            _int_env("HPCFT_FAULT_CRASH_AT_STEP"),
            _int_env("HPCFT_FAULT_HANG_AT_STEP"),
            _int_env("HPCFT_FAULT_RANK"),
            float(os.environ.get("HPCFT_FAULT_STEP_SLEEP") or 0),
            _int_env("HPCFT_FAULT_KILL_IN_SAVE_AT_STEP"),
            float(os.environ.get("HPCFT_FAULT_AWAIT_STOP_AT_END") or 0),
        )
        wanted = (
            fault.crash_at_step
            or fault.hang_at_step
            or fault.step_sleep
            or fault.kill_in_save_at_step
            or fault.await_stop_at_end
        )
        return fault if wanted else None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        hit = self.rank is None or self.rank == args.process_index
        if hit and self.crash_at_step == state.global_step:
            raise InjectedFault(
                f"HPCFT_FAULT_CRASH_AT_STEP={self.crash_at_step}: injected crash on rank {args.process_index}"
            )
        if hit and self.hang_at_step == state.global_step:
            print(f"HPCFT_FAULT_HANG_AT_STEP={self.hang_at_step}: rank {args.process_index} hangs", flush=True)
            while True:
                time.sleep(3600)
        if self.step_sleep:
            time.sleep(self.step_sleep)
        return control

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        stop_file = stop_file_from_env()
        if self.await_stop_at_end and stop_file:
            print(
                f"HPCFT_FAULT_AWAIT_STOP_AT_END={self.await_stop_at_end:g}: rank {args.process_index} waits for "
                "the stop file before the final save",
                flush=True,
            )
            deadline = time.monotonic() + self.await_stop_at_end
            while not stop_file.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
        return control

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # Runs before CompleteCheckpointCallback.on_save (train.py orders them): the process dies between
        # writing its files and the barrier after which rank 0 marks the checkpoint complete.
        hit = self.rank is None or self.rank == args.process_index
        if hit and self.kill_in_save_at_step == state.global_step:
            print(
                f"HPCFT_FAULT_KILL_IN_SAVE_AT_STEP={state.global_step}: killing rank {args.process_index} "
                "in the middle of the checkpoint save",
                flush=True,
            )
            os.kill(os.getpid(), signal.SIGKILL)
        return control


class StopFileCallback(TrainerCallback):
    """Checkpoints and stops at the first step boundary where the stop file exists (the launcher creates it
    before the time limit). All ranks agree on the step, so the checkpoint is written by all of them."""

    def __init__(self, stop_file: str | Path) -> None:
        self.stop_file = Path(stop_file)
        self.stopped_at: int | None = None

    @classmethod
    def from_env(cls) -> StopFileCallback | None:
        """The callback for HPCFT_STOP_FILE, or None when it is not set."""
        path = stop_file_from_env()
        return cls(path) if path else None

    def _any_rank_sees_file(self, args: TrainingArguments) -> bool:
        # Ranks look at the shared file system at slightly different times: agree with a max all-reduce.
        seen = torch.tensor([1.0 if self.stop_file.exists() else 0.0], device=args.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(seen, op=dist.ReduceOp.MAX)
        return bool(seen.item())

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.stopped_at is None and self._any_rank_sees_file(args):
            self.stopped_at = state.global_step
            # The next allocation resumes from this checkpoint: with save_only_model it would hold no optimizer
            # state and the requeued job would start over, so this one save keeps it (docs/training-loop.md).
            args.save_only_model = False
            control.should_save = True
            control.should_training_stop = True
        return control
