"""`hpcft interactive`: a shell on a compute node with the batch job's container and environment, and the
torchrun command to paste there."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job


def interactive_rc(job: Job, run_dir: Path, torchrun_line: str) -> str:
    """The shell start-up file of an interactive session: the batch job's environment, then a prompt."""
    from hpcft.launcher.render import _job_env, _python_for, shell_env_value

    launch = job.cfg.launch
    lines = ["# Written by `hpcft interactive`: the environment job.sbatch sets up, for an interactive shell.",
             '[ -f ~/.bashrc ] && . ~/.bashrc',
             f"export HPCFT_RUN_DIR={shlex.quote(str(run_dir))}",
             'export HPCFT_TRAIN_YAML="${HPCFT_RUN_DIR}/train.yaml"',
             f"export HPCFT_PYTHON={shlex.quote(_python_for(job.profile.python))}",
             f"export HPCFT_NPROC_PER_NODE={launch.nproc_per_node}"]
    lines += [f"export {k}={shell_env_value(v)}" for k, v in _job_env(job).items()]
    if job.profile.secret_file:
        secret = shlex.quote(str(Path(job.profile.secret_file).expanduser()))
        lines.append(f"if [ -r {secret} ]; then set -a; . {secret}; set +a; fi")
    lines += list(job.profile.setup)
    lines += ['MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
              f"MASTER_PORT=$(( {job.profile.rdzv_port_base} + SLURM_JOB_ID % 10000 ))",
              "export MASTER_ADDR MASTER_PORT",
              f"echo {shlex.quote('hpcft: to train, run:  ' + torchrun_line)}"]
    return "\n".join(lines) + "\n"


def _container_words(job: Job, run_dir: Path) -> tuple[list[str], list[str]]:
    from hpcft.launcher.config import unique_mounts
    from hpcft.launcher.render import container_invocation

    mounts = unique_mounts([*job.cfg.launch.mounts, str(run_dir), job.cfg.output_dir])
    srun_args, exec_words = container_invocation(job, run_dir, mounts)
    return [*srun_args, *job.cfg.launch.srun_args], exec_words


def torchrun_command(job: Job, run_dir: Path) -> str:
    """The command to paste in an interactive session (the one job.sbatch runs on every node)."""
    torchrun = ('"$HPCFT_PYTHON" -m torch.distributed.run --nnodes="$SLURM_NNODES" '
                '--nproc_per_node="$HPCFT_NPROC_PER_NODE" --node_rank="$SLURM_PROCID" --rdzv_backend=c10d '
                '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" --max_restarts=0 '
                '-m hpcft.trainer train "$HPCFT_TRAIN_YAML"')
    if job.cfg.launch.nodes == 1:
        return torchrun
    # From the shell on the first node, one task per allocated node, each in the job's container
    # (--overlap: the shell holds CPUs). The shell's step sets SLURM_NTASKS=1, which srun would obey,
    # so the task counts are given explicitly.
    srun_args, exec_words = _container_words(job, run_dir)
    words = ["srun", "--overlap", '--nodes="$SLURM_JOB_NUM_NODES"', '--ntasks="$SLURM_JOB_NUM_NODES"',
             "--ntasks-per-node=1", *map(shlex.quote, srun_args), *map(shlex.quote, exec_words),
             "bash", "-c", shlex.quote(torchrun)]
    return " ".join(words)


def interactive_argv(job: Job, run_dir: Path) -> list[str]:
    """srun --pty into a shell with the batch job's environment: inside its container on one node; on several
    nodes, under salloc, a plain shell on the first node (srun is not available inside containers) from where
    the printed command starts torchrun in the container on every node."""
    launch, profile = job.cfg.launch, job.profile
    alloc = [f"--nodes={launch.nodes}", "--ntasks-per-node=1", f"--time={launch.time}",
             f"--job-name={launch.job_name}"]
    for key in ("partition", "account", "qos", "reservation", "constraint", "mem"):
        if getattr(launch, key):
            alloc.append(f"--{key}={getattr(launch, key)}")
    if launch.gpus_per_node:
        alloc.append(f"--gres=gpu:{launch.gpus_per_node}" if profile.gres
                     else f"--gpus-per-node={launch.gpus_per_node}")
    if launch.cpus_per_task:
        alloc.append(f"--cpus-per-task={launch.cpus_per_task}")
    shell = ["bash", "--rcfile", str(run_dir / "interactive.rc"), "-i"]
    if launch.nodes == 1:
        srun_args, exec_words = _container_words(job, run_dir)
        return ["srun", "--pty", *alloc, *srun_args, *exec_words, *shell]
    return ["salloc", *alloc, "srun", "--pty", "--overlap", "--nodes=1", "--ntasks=1", *shell]


def prepare_interactive(job: Job, out_dir: str | Path | None = None,
                        command_line: list[str] | None = None) -> tuple[Path, list[str], str]:
    """Render the run directory plus interactive.rc; returns (run_dir, srun argv, torchrun line to paste)."""
    from hpcft.launcher.render import default_run_dir, finalize_job_name, render_run_dir

    finalize_job_name(job)
    target = Path(out_dir).expanduser().resolve() if out_dir else default_run_dir(job)
    line = torchrun_command(job, target)
    run_dir = render_run_dir(job, out_dir=target, command_line=command_line,
                             extra_files={"interactive.rc": interactive_rc(job, target, line)})
    return run_dir, interactive_argv(job, run_dir), line
