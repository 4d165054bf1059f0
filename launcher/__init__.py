"""hpcft's launcher: config schema, cluster profiles, rendering and Slurm job management (no torch here)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpcft")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"
