"""Hang watchdog: when no training step completes for `launch.hang_timeout` seconds, dump every thread's Python
stack into the run directory and end the process, so a stuck collective does not burn the whole allocation.

Every rank runs its own watchdog: a hang anywhere stalls all ranks at their next collective, so every rank
fires and leaves its stack (the hung rank's shows where it is stuck, the others show the collective they wait in).
The launcher passes the timeout as HPCFT_HANG_TIMEOUT and the run directory as HPCFT_RUN_DIR.
"""

from __future__ import annotations

import faulthandler
import os
import socket
import sys
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from hpcft.core.protocol import STACKS_DIR, hang_timeout_from_env, run_dir_from_env

HANG_EXIT_CODE = 124  # what `timeout` uses: the job ended because it made no progress


def stacks_dir(output_dir: str) -> Path:
    """<run dir>/stacks when started by the launcher, else <output_dir>/stacks."""
    return (run_dir_from_env() or Path(output_dir)) / STACKS_DIR


class HangWatchdog(TrainerCallback):
    """Ends the process with stacks dumped when steps stop completing (timer starts when training begins)."""

    def __init__(self, timeout_s: float, dump_dir: Path, rank: int, poll_s: float = 1.0) -> None:
        self.timeout_s = timeout_s
        self.dump_dir = dump_dir
        self.rank = rank
        self.poll_s = min(poll_s, timeout_s / 4)
        self._last_progress = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, output_dir: str, rank: int) -> HangWatchdog | None:
        timeout = hang_timeout_from_env()
        return cls(timeout, stacks_dir(output_dir), rank) if timeout else None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="hpcft-hang-watchdog", daemon=True)
        self._thread.start()

    def on_step_end(self, args, state, control, **kwargs):
        self._last_progress = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        self._last_progress = time.monotonic()  # a long checkpoint write is progress too

    def on_train_end(self, args, state, control, **kwargs):
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_s):
            idle = time.monotonic() - self._last_progress
            if idle >= self.timeout_s:
                self._fire(idle)

    def _fire(self, idle: float) -> None:
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"{socket.gethostname()}-rank{self.rank}.txt"
        with open(path, "w") as f:
            f.write(
                f"hpcft hang watchdog: no training step completed for {idle:.0f} s "
                f"(launch.hang_timeout={self.timeout_s:g}); stacks of every thread of rank {self.rank}:\n\n"
            )
            f.flush()
            faulthandler.dump_traceback(file=f, all_threads=True)
        print(
            f"hpcft: rank {self.rank}: no training step for {idle:.0f} s (launch.hang_timeout="
            f"{self.timeout_s:g}); Python stacks written to {path}; ending the job",
            file=sys.stderr,
            flush=True,
        )
        # os._exit: the main thread is stuck (that is the point), so no clean shutdown can be waited for.
        os._exit(HANG_EXIT_CODE)
