"""`hpcft interactive`: a shell on a compute node with the batch job's container and environment (both from the
job's plan), and the torchrun command to paste there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job
    from hpcft.launcher.jobplan import JobPlan


def _in_container(plan: JobPlan) -> bool:
    """On one node the shell itself runs in the container; on several it runs on the first node's host."""
    return plan.runtime.image_format is not None and plan.nodes == 1


def session_setup(plan: JobPlan) -> list[str]:
    """The batch job's environment for the session's shell. Inside an Apptainer container the APPTAINERENV_
    values are what the container would have received (the runtime says how)."""
    lines = plan.runtime.session_setup(plan.shell_setup(), _in_container(plan))
    if _in_container(plan):
        # Images have no Slurm commands (seen: `scontrol: command not found` in the local pyxis image), and a
        # one-node session is its own rendezvous host.
        lines = [re.sub(r"^MASTER_ADDR=\$\(scontrol .*\)$", "MASTER_ADDR=$(hostname)", line) for line in lines]
    return lines


def interactive_rc(plan: JobPlan, torchrun_line: str) -> str:
    """The shell start-up file of an interactive session: the batch job's environment, then a prompt."""
    lines = [
        "# Written by `hpcft interactive`: the environment job.sbatch sets up, for an interactive shell.",
        "[ -f ~/.bashrc ] && . ~/.bashrc",
        *session_setup(plan),
        f"echo {shlex.quote('hpcft: to train, run:  ' + torchrun_line)}",
    ]
    return "\n".join(lines) + "\n"


def torchrun_command(plan: JobPlan) -> str:
    """The command to paste in an interactive session (the one job.sbatch runs on every node)."""
    if plan.nodes == 1:
        return plan.torchrun_line
    # From the shell on the first node, one task per allocated node, each in the job's container
    # (--overlap: the shell holds CPUs). The shell's step sets SLURM_NTASKS=1, which srun would obey,
    # so the task counts are given explicitly.
    words = [
        "srun",
        "--overlap",
        '--nodes="$SLURM_JOB_NUM_NODES"',
        '--ntasks="$SLURM_JOB_NUM_NODES"',
        *map(shlex.quote, plan.srun_args),
        "bash",
        "-c",
        shlex.quote(plan.node_command()),
    ]
    return " ".join(words)


def interactive_argv(plan: JobPlan) -> list[str]:
    """srun --pty into a shell with the batch job's environment: inside its container on one node; on several
    nodes, under salloc, a plain shell on the first node (srun is not available inside containers) from where
    the printed command starts torchrun in the container on every node."""
    alloc = plan.allocation_args()
    shell = ["bash", "--rcfile", str(plan.run_dir / "interactive.rc"), "-i"]
    if plan.nodes == 1:
        return [
            "srun",
            "--pty",
            *alloc,
            *plan.container_srun_args,
            *plan.extra_srun_args,
            *plan.container_prefix,
            *shell,
        ]
    return ["salloc", *alloc, "srun", "--pty", "--overlap", "--nodes=1", "--ntasks=1", *shell]


def prepare_interactive(
    job: Job, out_dir: str | Path | None = None, command_line: list[str] | None = None
) -> tuple[Path, list[str], str]:
    """Render the run directory plus interactive.rc; returns (run_dir, srun argv, torchrun line to paste)."""
    from hpcft.launcher.jobplan import make_plan
    from hpcft.launcher.render import render_run_dir, target_run_dir

    target = target_run_dir(job, out_dir)
    plan = make_plan(job, target)
    line = torchrun_command(plan)
    run_dir = render_run_dir(
        job, out_dir=target, command_line=command_line, extra_files={"interactive.rc": interactive_rc(plan, line)}
    )
    return run_dir, interactive_argv(plan), line
