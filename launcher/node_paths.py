"""Can the compute nodes see the job's paths? Checked on the login node against what the profile says about the
cluster's file systems, so a path only the login node has fails now rather than after the queue wait."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.launcher.config import Job


def _under(path: str, roots: list[str]) -> bool:
    target = Path(path)
    return any(target == Path(root) or Path(root) in target.parents for root in roots)


def check_node_paths(job: Job, paths: list[str]) -> list[str]:
    """Raise for a path outside the file systems the profile lists in `node_paths`; warn for node-local ones."""
    profile = job.profile
    warnings = []
    for path in paths:
        if profile.node_paths is not None and not _under(path, profile.node_paths):
            raise ConfigError(
                f"{path} is not on a file system the compute nodes of profile '{profile.name}' see "
                f"({', '.join(profile.node_paths)}); move it there, or add its file system to the "
                "profile's node_paths"
            )
        if _under(path, profile.node_local_paths):
            warnings.append(
                f"{path} is on a node-local file system ({', '.join(profile.node_local_paths)}): each "
                "node sees its own copy, so other nodes will not find it; use a shared file system"
            )
    return warnings
