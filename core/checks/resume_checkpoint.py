"""Whether a folder given as `resume_from_checkpoint` is a checkpoint: the same rule on the login node (before the
queue) and in the trainer (a train.yaml edited by hand)."""

from __future__ import annotations

import re
from pathlib import Path

TRAINER_STATE = "trainer_state.json"  # transformers writes it into every checkpoint-<step> folder
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def resume_checkpoint_problem(path: Path) -> str | None:
    """What is wrong with resuming from `path` (None when it is a checkpoint folder), with the fix: an output_dir
    is pointed at its latest checkpoint."""
    if not path.is_dir():
        return f"no such folder: {path}; point it at an existing checkpoint folder, or remove it"
    if (path / TRAINER_STATE).is_file():
        return None
    steps = sorted(
        (int(match.group(1)), child.name)
        for child in path.iterdir()
        if (match := _CHECKPOINT_NAME.fullmatch(child.name)) and (child / TRAINER_STATE).is_file()
    )
    hint = (
        f"; it is an output_dir: use {path / steps[-1][1]} (its latest checkpoint), or auto_resume_from_checkpoints: "
        "true"
        if steps
        else "; point it at a checkpoint-<step> folder of an earlier run's output_dir"
    )
    return f"{path} is not a checkpoint (no {TRAINER_STATE}){hint}"
