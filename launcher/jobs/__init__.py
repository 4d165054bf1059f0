"""A job after it is rendered: submitting it (sbatch, submitit, job arrays for sweeps), the runs index and
manifest, status, cancel, interactive sessions and the doctor job. May import hpcft.core and hpcft.launcher."""
