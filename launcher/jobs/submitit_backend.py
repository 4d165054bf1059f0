"""The submitit backend: the job's plan submitted through submitit's SlurmExecutor, one task per node running the
plan's node command, as job.sbatch does (submitit itself is imported only when used)."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core import protocol
from hpcft.launcher import slurm
from hpcft.launcher.slurm import SlurmError

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job
    from hpcft.launcher.jobplan import JobPlan

# Slurm options submitit takes as its own parameters (the others go in additional_parameters).
_SUBMITIT_PARAMETERS = {
    "job-name": str,
    "nodes": int,
    "ntasks-per-node": int,
    "gres": str,
    "gpus-per-node": int,
    "cpus-per-task": int,
    "partition": str,
    "account": str,
    "qos": str,
    "constraint": str,
}
# Options submitit decides itself: its own log files, and the time-limit signal and requeue (see checkpoint()).
_SUBMITIT_OWN = ("output", "error", "open-mode", "requeue", "signal", "time")


@dataclass
class TorchrunOnNode:
    """What submitit runs as each node's task: the plan's node command, as job.sbatch runs it under srun."""

    command: str
    stop_grace_s: float = 300

    def __call__(self) -> int:
        import subprocess

        self._proc = subprocess.Popen(["bash", "-c", self.command])
        code = self._proc.wait()
        if code != 0:
            raise RuntimeError(
                f"torchrun on {os.uname().nodename} (node rank {os.environ.get('SLURM_PROCID')}) exited {code}"
            )
        return code

    def checkpoint(self) -> Any:
        """submitit's time-limit hook: as job.sbatch's USR1 trap, ask the trainer to save and stop (it polls
        the stop file), wait for it, then let submitit requeue the job, which resumes from the checkpoint."""
        from submitit.helpers import DelayedSubmission

        stop = protocol.stop_file_from_env()
        if stop is not None:
            stop.touch()
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=self.stop_grace_s)
            except Exception:  # noqa: BLE001 - out of time: Slurm ends it anyway
                pass
        done = os.environ.get(protocol.DONE_FILE_ENV)
        if done and Path(done).exists():
            return None  # the signal came while the run was finishing: a finished run is never requeued
        return DelayedSubmission(TorchrunOnNode(self.command, self.stop_grace_s))


def time_to_minutes(value: str) -> int:
    """Slurm time strings (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) -> whole minutes, rounded up."""
    from hpcft.core.schema import slurm_time_to_seconds

    return max(1, -(-slurm_time_to_seconds(value) // 60))


def submitit_parameters(plan: JobPlan) -> dict[str, Any]:
    """The plan's Slurm options as submitit's SlurmExecutor parameters."""
    params: dict[str, Any] = {"additional_parameters": {"chdir": str(plan.run_dir)}}
    for key, value in plan.sbatch_options:
        if key in _SUBMITIT_PARAMETERS:
            params[key.replace("-", "_")] = _SUBMITIT_PARAMETERS[key](value)
        elif key == "time":
            params["time"] = time_to_minutes(str(value))
        elif key not in _SUBMITIT_OWN:
            # As Slurm strings ("64G"): submitit's own `mem` wants gigabytes. A flag renders as `--key`.
            params["additional_parameters"][key.replace("-", "_")] = True if value is None else value
    return params


def submit_with_submitit(job: Job, plan: JobPlan) -> Any:
    """Submit the job through submitit: the plan's environment as its setup lines, one task per node."""
    import submitit

    launch = job.cfg.launch
    # In a container runtime the task's Python is the image's; elsewhere it is the one running hpcft.
    python = dict(plan.exports)[protocol.PYTHON_ENV]  # already quoted for the shell
    executor_python = python if plan.runtime.python_in_container else shlex.quote(sys.executable)
    executor = submitit.SlurmExecutor(
        folder=Path(plan.run_dir) / "submitit",
        python=executor_python,
        max_num_timeout=launch.max_requeues if launch.requeue else 0,
    )
    executor.update_parameters(
        **submitit_parameters(plan),
        setup=plan.shell_setup(),
        srun_args=plan.srun_args,
        signal_delay_s=launch.signal_grace,
    )
    try:
        return executor.submit(TorchrunOnNode(plan.node_command(), stop_grace_s=max(10, launch.signal_grace - 10)))
    except Exception as exc:  # submitit wraps sbatch's refusal in its own exception types
        raise SlurmError(f"sbatch refused the job (submitit): {slurm.slurm_message(str(exc))}") from None
