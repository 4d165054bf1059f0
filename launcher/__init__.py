"""hpcft's launcher: config schema, cluster profiles, rendering and Slurm job management (no torch here)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpcft")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    # `from hpcft.launcher import submit` without importing submitit/Slurm code for every CLI start.
    if name == "submit":
        from hpcft.launcher.api import submit

        return submit
    raise AttributeError(f"module 'hpcft.launcher' has no attribute {name!r}")
