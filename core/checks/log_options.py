"""Slurm options that would move a job's log files away from <run dir>/logs/, where `hpcft logs`, `status` and
`logs --errors` read them: refused in `launch.sbatch_args` / `launch.srun_args` (config, profile or command line)
before anything is rendered."""

from __future__ import annotations

import re
from pathlib import Path

# sbatch and srun take any unambiguous prefix of a long option (getopt_long): --out is --output, --err is --error.
_LONG = {name: {name[:n] for n in range(1, len(name) + 1)} for name in ("output", "error")}
_SHORT = re.compile(r"-[oe]")  # -o FILE, -oFILE, -e FILE


def _moved_stream(arg: str) -> str | None:
    """'output' or 'error' when `arg` redirects that stream (long option, a prefix of it, or -o/-e)."""
    if arg.startswith("--"):
        key = arg[2:].partition("=")[0]
        return next((name for name, prefixes in _LONG.items() if key in prefixes), None)
    if _SHORT.match(arg):
        return "output" if arg[1] == "o" else "error"
    return None


def _chdir_problem(arg: str) -> str | None:
    """`--chdir` (or --ch, --chd, ...): the logs are absolute paths and stay put, but a folder the node cannot
    enter fails the job when it starts."""
    key, _, folder = arg[2:].partition("=")
    if not (arg.startswith("--") and len(key) >= 2 and "chdir".startswith(key)):
        return None
    if not folder.startswith("/") or not Path(folder).is_dir():
        return (
            f"'{arg}': the job's working folder must be an existing absolute folder (Slurm cannot start the job in "
            "one it cannot enter); fix the path or remove the option"
        )
    return None


def log_moving_problem(args: list[str], which: str) -> str | None:
    """The message for the first option in `args` (launch.sbatch_args or launch.srun_args) that moves a log, or
    (sbatch) a working folder the job could not start in."""
    for arg in args:
        problem = _chdir_problem(arg) if which == "sbatch_args" else None
        if problem:
            return problem
        stream = _moved_stream(arg)
        if stream is None:
            continue
        if which == "sbatch_args":
            return (
                f"'{arg}' moves the job's {stream} file away from <run dir>/logs/, where `hpcft logs` and "
                "`hpcft status` read it; remove it (hpcft writes logs/slurm-<job id>.out and .err in the run folder)"
            )
        return (
            f"'{arg}' sends the training's {stream} to a file of its own instead of the job's log in <run dir>/logs/, "
            "where `hpcft logs` reads it (ranks labelled); remove it"
        )
    return None
