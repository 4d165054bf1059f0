"""The submitit backend: the rendered job submitted through submitit's SlurmExecutor, one task per node
running the same torchrun command job.sbatch runs (submitit itself is imported only when used)."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.launcher import slurm
from hpcft.launcher.slurm import SlurmError

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


@dataclass
class TorchrunOnNode:
    """What submitit runs as each node's task: the same torchrun command job.sbatch runs under srun."""

    container_exec: list[str]
    stop_grace_s: float = 300

    def __call__(self) -> int:
        import subprocess

        env = os.environ
        argv = [*self.container_exec, env["HPCFT_PYTHON"], "-m", "torch.distributed.run",
                f"--nnodes={env['SLURM_NNODES']}", f"--nproc_per_node={env['HPCFT_NPROC_PER_NODE']}",
                f"--node_rank={env['SLURM_PROCID']}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={env['MASTER_ADDR']}:{env['MASTER_PORT']}", f"--rdzv_id={env['SLURM_JOB_ID']}",
                "--max_restarts=0", "-m", "hpcft.trainer", "train", env["HPCFT_TRAIN_YAML"]]
        self._proc = subprocess.Popen(argv)
        code = self._proc.wait()
        if code != 0:
            raise RuntimeError(f"torchrun on {os.uname().nodename} (node rank {env['SLURM_PROCID']}) exited {code}")
        return code

    def checkpoint(self) -> Any:
        """submitit's time-limit hook: as job.sbatch's USR1 trap, ask the trainer to save and stop (it polls
        $HPCFT_STOP_FILE), wait for it, then let submitit requeue the job, which resumes from the checkpoint."""
        from submitit.helpers import DelayedSubmission

        Path(os.environ["HPCFT_STOP_FILE"]).touch()
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=self.stop_grace_s)
            except Exception:  # noqa: BLE001 - out of time: Slurm ends it anyway
                pass
        if Path(os.environ.get("HPCFT_DONE_FILE", "/nonexistent")).exists():
            return None  # the signal came while the run was finishing: a finished run is never requeued
        return DelayedSubmission(TorchrunOnNode(self.container_exec, self.stop_grace_s))


def time_to_minutes(value: str) -> int:
    """Slurm time strings (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) -> whole minutes, rounded up."""
    days, _, rest = value.partition("-") if "-" in value else ("0", "", value)
    parts = [int(p) for p in rest.split(":")]
    if "-" in value:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = 0, parts[0], 0
    total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    return max(1, -(-total // 60))


def submit_with_submitit(job: Job, run_dir: Path) -> Any:
    """Submit the rendered job through submitit: one task per node running torchrun, as job.sbatch does."""
    import submitit

    from hpcft.launcher.config import unique_mounts
    from hpcft.launcher.render import _job_env, _python_for, container_invocation, shell_env_value

    profile, launch, cfg = job.profile, job.cfg.launch, job.cfg
    mounts = unique_mounts([*launch.mounts, str(run_dir), cfg.output_dir])
    srun_args, exec_words = container_invocation(job, run_dir, mounts)
    python = _python_for(profile.python)
    exports = {"HPCFT_RUN_DIR": shlex.quote(str(run_dir)),
               "HPCFT_TRAIN_YAML": shlex.quote(str(run_dir / "train.yaml")),
               "HPCFT_PYTHON": shlex.quote(python), "HPCFT_NPROC_PER_NODE": str(launch.nproc_per_node),
               "HPCFT_STOP_FILE": '"${HPCFT_RUN_DIR}/stop-${SLURM_JOB_ID}"',
               "HPCFT_DONE_FILE": '"${HPCFT_RUN_DIR}/done-${SLURM_JOB_ID}"',
               "HPCFT_HANG_TIMEOUT": str(launch.hang_timeout)}
    exports.update({k: shell_env_value(v) for k, v in _job_env(job).items()})
    setup = [f"export {k}={v}" for k, v in exports.items()]
    if profile.secret_file:
        secret = shlex.quote(str(Path(profile.secret_file).expanduser()))
        setup.append(f"if [ -r {secret} ]; then set -a; . {secret}; set +a; fi")
    setup += list(profile.setup)
    setup += ['MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
              f"MASTER_PORT=$(( {profile.rdzv_port_base} + SLURM_JOB_ID % 10000 ))",
              "export MASTER_ADDR MASTER_PORT"]
    # In a container runtime the task's Python is the image's; on bare nodes it is the one running hpcft.
    executor_python = shlex.quote(python if profile.runtime in ("edf", "pyxis") else sys.executable)
    executor = submitit.SlurmExecutor(folder=run_dir / "submitit", python=executor_python,
                                      max_num_timeout=launch.max_requeues if launch.requeue else 0)
    params: dict[str, Any] = {
        "job_name": launch.job_name, "nodes": launch.nodes, "ntasks_per_node": 1,
        "time": time_to_minutes(launch.time), "setup": setup,
        # As job.sbatch: one failed node ends the step rather than leaving the others in a collective.
        "srun_args": ["--kill-on-bad-exit=1", "--wait=60", *srun_args, *launch.srun_args],
        "signal_delay_s": launch.signal_grace, "additional_parameters": {"chdir": str(run_dir)},
    }
    for key in ("partition", "account", "qos", "constraint", "cpus_per_task"):
        if getattr(launch, key):
            params[key] = getattr(launch, key)
    for key in ("reservation", "mem"):  # as Slurm strings ("64G"); submitit's own `mem` wants gigabytes
        if getattr(launch, key):
            params["additional_parameters"][key] = getattr(launch, key)
    if launch.gpus_per_node:
        if profile.gres:
            params["gres"] = f"gpu:{launch.gpus_per_node}"
        else:
            params["gpus_per_node"] = launch.gpus_per_node
    executor.update_parameters(**params)
    try:
        return executor.submit(TorchrunOnNode(exec_words, stop_grace_s=max(10, launch.signal_grace - 10)))
    except Exception as exc:  # submitit wraps sbatch's refusal in its own exception types
        raise SlurmError(f"sbatch refused the job (submitit): {slurm.slurm_message(str(exc))}") from None
