"""hpcft's launcher, on the login node: cluster profiles, loading a job, rendering its run folder, and Slurm
(jobs/, logs/, estimates/, runtimes/). May import hpcft.core; never the trainer, never torch."""

# pyproject.toml's version, written here as well (tests/launcher/test_packaging.py keeps the two equal): asking
# importlib.metadata costs every command more than a bare interpreter's whole start-up.
__version__ = "0.1.0"


def __getattr__(name: str):
    # `from hpcft.launcher import submit` without importing submitit/Slurm code for every CLI start.
    if name == "submit":
        from hpcft.launcher.api import submit

        return submit
    raise AttributeError(f"module 'hpcft.launcher' has no attribute {name!r}")
