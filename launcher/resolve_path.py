"""Making a path absolute without a traceback: Path.resolve() raises RuntimeError on a symlink loop (Python 3.11;
OSError from 3.13) and os.getcwd() fails in a deleted folder, so every user-given path goes through here."""

from __future__ import annotations

import os
from pathlib import Path

from hpcft.core.errors import ConfigError


def absolute_path(value: str | Path, what: str, base: Path | None = None) -> Path:
    """`value` (~ expanded) made absolute against `base` (else the current folder), symlinks resolved."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or current_folder()) / path
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        problem = "is a symlink loop" if "loop" in str(exc).lower() else f"cannot be resolved ({exc})"
        raise ConfigError(f"{what}: {path} {problem}; point it at a real file or folder") from None


def current_folder() -> Path:
    try:
        return Path(os.getcwd())
    except OSError:
        raise ConfigError(
            "the current folder no longer exists (deleted or moved away); cd to an existing folder and run again"
        ) from None
