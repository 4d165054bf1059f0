"""Which `lr_scheduler_kwargs` each learning-rate schedule takes, checked on the login node without torch.

transformers' `get_scheduler` passes the kwargs to the schedule function (`get_cosine_schedule_with_warmup`, ...),
which fails with a TypeError on the node for a name it does not take (`eta_min` is PyTorch's, not transformers').
The table is derived from those functions' signatures, less what Trainer passes itself (optimizer,
num_warmup_steps, num_training_steps); tests/trainer/test_scheduler_kwargs.py pins it to the real signatures.
"""

from __future__ import annotations

import math
from typing import Any

# transformers schedule name -> the keyword arguments a user may add. `constant` and `constant_with_warmup` get
# none: get_scheduler calls them without the kwargs, so anything given would be dropped silently.
SCHEDULER_KWARGS: dict[str, tuple[str, ...]] = {
    "linear": ("last_epoch",),
    "cosine": ("num_cycles", "last_epoch"),
    "cosine_with_min_lr": ("num_cycles", "last_epoch", "min_lr", "min_lr_rate"),
    "constant": (),
    "constant_with_warmup": (),
}

# Names other tools use for a setting hpcft spells differently: said in the error instead of a bare "unknown".
_OTHER_NAMES = {
    "eta_min": "the cosine schedule's floor is cosine_min_lr_ratio (a share of learning_rate)",
    "min_lr": "for a floor under cosine set cosine_min_lr_ratio (a share of learning_rate)",
    "min_lr_rate": "for a floor under cosine set cosine_min_lr_ratio (a share of learning_rate)",
    "warmup_steps": "set warmup_steps at the top level",
    "num_warmup_steps": "set warmup_steps at the top level",
    "num_training_steps": "hpcft passes it from max_steps / num_epochs",
    "T_max": "the schedule's length comes from max_steps / num_epochs",
}


def effective_scheduler(lr_scheduler: str, cosine_min_lr_ratio: float | None, quadratic_warmup: bool) -> str:
    """The transformers schedule that runs: a cosine with a floor is transformers' cosine_with_min_lr (axolotl's
    cosine_min_lr_ratio), except under a quadratic warmup, which decays to 0 as in axolotl."""
    if lr_scheduler == "cosine" and cosine_min_lr_ratio is not None and not quadratic_warmup:
        return "cosine_with_min_lr"
    return lr_scheduler


def scheduler_kwargs_problem(
    kwargs: dict[str, Any], lr_scheduler: str, cosine_min_lr_ratio: float | None, quadratic_warmup: bool
) -> str | None:
    """What is wrong with lr_scheduler_kwargs for this schedule, as one message naming the key (None if nothing)."""
    schedule = effective_scheduler(lr_scheduler, cosine_min_lr_ratio, quadratic_warmup)
    allowed = SCHEDULER_KWARGS[schedule]
    for name, value in kwargs.items():
        if name in ("min_lr", "min_lr_rate") and schedule == "cosine_with_min_lr":
            return (
                f"lr_scheduler_kwargs.{name}: cosine_min_lr_ratio already sets the cosine's floor; keep one "
                "(cosine_min_lr_ratio, as in axolotl)"
            )
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no lr_scheduler_kwargs"
            hint = f"; {_OTHER_NAMES[name]}" if name in _OTHER_NAMES else ""
            return (
                f"lr_scheduler_kwargs.{name}: lr_scheduler: {lr_scheduler} does not take '{name}' (transformers' "
                f"{schedule} schedule {takes}){hint}; remove it"
            )
        integer = name == "last_epoch"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"lr_scheduler_kwargs.{name} must be {'an integer' if integer else 'a number'} (got {value!r})"
        if not math.isfinite(value):
            return f"lr_scheduler_kwargs.{name} must be a finite number (got {value!r})"
    return None
