"""What a person reads while a job runs: one short line per logged step, and no library progress bars in the log.

    step 10/35  loss 4.714  lr 2.56e-03  grad 1.77  2.7k tok/s  0:41 elapsed  ~1:02 left

Machines read the same numbers as JSON in <output_dir>/metrics.jsonl (metrics.py). Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

# Set before transformers/datasets/huggingface_hub are imported: their tqdm bars redraw with carriage returns,
# which a batch job's log file keeps as one ever-growing line per bar (e.g. "Writing model shards" on every save).
PROGRESS_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


def quiet_progress_bars_in_logs(stream=None) -> bool:
    """Turn the libraries' progress bars off when the output is a file or pipe (a batch job), unless the user
    set the switches; on a terminal they stay. hpcft prints its own one-line progress instead. True when off."""
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return False
    for name in PROGRESS_BAR_SWITCHES:
        os.environ.setdefault(name, "1")
    return True


def clock(seconds: float) -> str:
    """0:41, 12:05, 1:02:03 (hours only when there are any)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def short_count(value: float) -> str:
    """2.7k, 41k, 1.2M: three significant figures at most."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.1f}{unit}" if scaled < 10 else f"{scaled:.0f}{unit}"
    return f"{value:.0f}"


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def format_step_line(
    step: int,
    max_steps: int | None,
    loss: float | None,
    lr: float | None,
    grad_norm: float | None,
    tokens_per_s: float | None,
    elapsed_s: float | None,
    left_s: float | None,
    preference: dict[str, Any] | None = None,
) -> str:
    """The readable line of one logged step; missing values are left out, a diverged loss shows as nan.
    `preference` (rl: runs) adds what users watch in DPO: reward accuracy, margin, chosen and rejected rewards."""
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    parts.append(f"loss {loss:.3f}" if _finite(loss) else "loss nan")
    if _finite(lr):
        parts.append(f"lr {lr:.2e}")
    if _finite(grad_norm):
        parts.append(f"grad {grad_norm:.2f}")
    if _finite(tokens_per_s):
        parts.append(f"{short_count(tokens_per_s)} tok/s")
    if _finite(elapsed_s):
        parts.append(f"{clock(elapsed_s)} elapsed")
    if _finite(left_s):
        parts.append(f"~{clock(left_s)} left")
    for key, label in PREFERENCE_LABELS.items():
        value = (preference or {}).get(key)
        if _finite(value):
            parts.append(f"{label} {value:.3g}")
    return "  ".join(parts)


# metrics-line names of preference tuning's rewards -> their short label on the readable step line
PREFERENCE_LABELS = {
    "reward_accuracy": "acc",
    "reward_margin": "margin",
    "rewards_chosen": "chosen",
    "rewards_rejected": "rejected",
}


def format_eval_line(step: int, max_steps: int | None, eval_loss: float | None) -> str:
    where = f"step {step}/{max_steps}" if max_steps else f"step {step}"
    return f"eval at {where}  eval_loss " + (f"{eval_loss:.3f}" if _finite(eval_loss) else "nan")


class StepClock:
    """Elapsed time since this process started training, and the time left at the average pace so far."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_step = 0

    def start(self, step: int) -> None:
        """Training (re)starts at `step` (0, or the checkpoint's step when resuming)."""
        self.started, self.first_step = time.monotonic(), step

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self, step: int, max_steps: int | None) -> float | None:
        done = step - self.first_step
        if not max_steps or done <= 0:
            return None
        return self.elapsed() / done * max(0, max_steps - step)
