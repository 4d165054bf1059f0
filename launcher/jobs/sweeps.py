"""Sweeps: `--sweep key=v1,v2` options -> a grid of validated jobs, rendered as one Slurm job array."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


def sweep_axes(specs: list[str]) -> list[list[str]]:
    """`--sweep lr=1e-5,2e-5 --sweep lora_r=8,16` -> [[lr=1e-5, lr=2e-5], [lora_r=8, lora_r=16]]."""
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise ConfigError(f"--sweep '{spec}' must look like key=value1,value2 (e.g. learning_rate=1e-5,2e-5)")
        axes.append([f"{key.strip()}={choice}" for choice in choices])
    return axes


def sweep_points(specs: list[str]) -> list[list[str]]:
    """The grid, as override lists (the first --sweep varying slowest)."""
    return [list(point) for point in itertools.product(*sweep_axes(specs))]


def check_sweep_size(specs: list[str], max_array_size: int) -> int:
    """The number of points, counted before any is built: a job array's indices must stay below the cluster's
    MaxArraySize, and a grid too large for one array is refused before a single point is validated."""
    count = math.prod(len(axis) for axis in sweep_axes(specs))
    if count > max_array_size:
        raise ConfigError(
            f"--sweep: {count} points, but this cluster's job arrays hold at most {max_array_size} tasks "
            f"(MaxArraySize {max_array_size}: indices 0-{max_array_size - 1}); sweep fewer values, or split the "
            "grid over several submissions"
        )
    return count


@dataclass
class SweepPoint:
    index: int
    overrides: list[str]
    job: Job


def load_sweep(
    config: str | Path, profile: str, overrides: list[str], cli_launch: dict[str, Any], specs: list[str], base: Job
) -> list[SweepPoint]:
    """Validate every grid point before anything is written; each point trains into <output_dir>/point-<i>."""
    from hpcft.launcher.config import load_job

    points = []
    for index, point in enumerate(sweep_points(specs)):
        own = [*overrides, *point, f"output_dir={base.cfg.output_dir}/point-{index}"]
        points.append(
            SweepPoint(
                index, point, load_job(config, profile, overrides=own, cli_launch=cli_launch, profile=base.profile)
            )
        )
    return points


def render_sweep_files(points: list[SweepPoint], run_dir: Path) -> dict[str, str]:
    """points/<i>/{train.yaml, deepspeed.json or fsdp.json, point.json}: array task i trains point i."""
    from hpcft.launcher.render import render_files

    files: dict[str, str] = {}
    for point in points:
        point_dir = run_dir / "points" / str(point.index)
        rendered = render_files(point.job, point_dir)
        files[f"points/{point.index}/train.yaml"] = rendered["train.yaml"]
        for name in ("deepspeed.json", "fsdp.json"):
            if name in rendered:
                files[f"points/{point.index}/{name}"] = rendered[name]
        files[f"points/{point.index}/point.json"] = json.dumps(
            {"index": point.index, "overrides": point.overrides, "output_dir": point.job.cfg.output_dir}, indent=2
        )
    return files
