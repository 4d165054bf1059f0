"""Container runtimes as objects: one module per value of a profile's `runtime` (none, edf, pyxis, apptainer),
each giving the srun options, environment, mounts, interactive shell and image format of running a job in it;
and the training image (image.py: build, import, check; image_contents.py: what is inside one).

May import hpcft.core and hpcft.launcher. A new runtime is one module here and one line in RUNTIMES.
"""

from __future__ import annotations

from hpcft.core.errors import ConfigError
from hpcft.launcher.runtimes.apptainer import APPTAINER
from hpcft.launcher.runtimes.base import ContainerRuntime
from hpcft.launcher.runtimes.edf import EDF
from hpcft.launcher.runtimes.none import NONE
from hpcft.launcher.runtimes.pyxis import PYXIS

RUNTIMES: dict[str, ContainerRuntime] = {runtime.name: runtime for runtime in (NONE, EDF, PYXIS, APPTAINER)}


def runtime_for(name: str) -> ContainerRuntime:
    """The runtime a profile names (profiles.py has already refused other names)."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"unknown container runtime '{name}'; one of: {', '.join(RUNTIMES)}") from None


__all__ = ["RUNTIMES", "ContainerRuntime", "runtime_for"]
