"""What runs on the nodes, described once: the `JobPlan` of a validated job in its run directory.

job.sbatch (templates/job.sbatch.j2), the submitit backend and `hpcft interactive` all consume the same plan,
so the Slurm options, the environment, the mounts and the torchrun command cannot drift between them.

How the step enters its container is the profile's runtime's (launcher/runtimes/, one module per runtime).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core import protocol
from hpcft.core.errors import ConfigError
from hpcft.core.features.eval_datasets import eval_and_tracking_paths, folders_to_create
from hpcft.core.quoting import shell_env_value
from hpcft.core.run_paths import ARRAY_TASK, JOB_LOG, ONE_JOB, RunPaths
from hpcft.launcher.mounts import unique_mounts
from hpcft.launcher.runtimes import ContainerRuntime, runtime_for
from hpcft.launcher.runtimes.pyxis import enroot_image

if TYPE_CHECKING:  # config.py builds the plan while loading a job
    from hpcft.launcher.config import Job

# Slurm options an interactive allocation takes from the plan (the others describe a batch script).
ALLOCATION_OPTIONS = (
    "job-name",
    "nodes",
    "ntasks-per-node",
    "gres",
    "gpus-per-node",
    "cpus-per-task",
    "time",
    "account",
    "partition",
    "qos",
    "reservation",
    "constraint",
    "mem",
)
# Protocol variables the trainer reads inside the container.
_TRAINER_VARIABLES = (
    protocol.RUN_DIR_ENV,
    protocol.TRAIN_YAML_ENV,
    protocol.STOP_FILE_ENV,
    protocol.DONE_FILE_ENV,
    protocol.HANG_TIMEOUT_ENV,
)


@dataclass(frozen=True)
class JobPlan:
    """Everything a job does on the nodes, as data; built by `make_plan` and not changed afterwards."""

    run_dir: Path
    runtime: ContainerRuntime
    # Slurm options in the order job.sbatch writes them: ("nodes", "2"); a flag without value has None.
    sbatch_options: list[tuple[str, str | None]]
    # Variables exported before srun, as (NAME, value already quoted for the shell).
    exports: list[tuple[str, str]]
    # Shell lines run after the exports: the secret file, the Apptainer secret pass-through, the profile's setup.
    prologue: list[str]
    # The c10d rendezvous address: the first node, a port derived from the job id.
    rendezvous: list[str]
    # Every path the job reads or writes, as container mounts (`/path` or `src:dst`).
    mounts: list[str]
    # Folders the job writes that must exist before it starts (a container runtime cannot mount a missing one).
    create_dirs: list[str]
    # The variables the container gets from the profile and launch.env ({NAME: value with $VARS}).
    container_env: dict[str, str]
    image: str
    # srun options of the step: how it runs (one failed node ends it), how it enters the container (edf, pyxis),
    # and the config's launch.srun_args.
    step_args: list[str]
    container_srun_args: list[str]
    extra_srun_args: list[str]
    # Words run on the node before the Python (apptainer exec ... IMAGE); empty for the other runtimes.
    container_prefix: list[str]
    # torchrun, as shell words expanded on the node ("$SLURM_PROCID" differs per node).
    torchrun: list[str]

    @property
    def srun_args(self) -> list[str]:
        return [*self.step_args, *self.container_srun_args, *self.extra_srun_args]

    @property
    def nodes(self) -> int:
        return int(dict(self.sbatch_options)["nodes"] or 1)

    @property
    def torchrun_line(self) -> str:
        return " ".join(self.torchrun)

    def node_command(self, wrap: bool = False) -> str:
        """The shell command every node's task runs (`bash -c` in job.sbatch, submitit and interactive);
        `wrap` breaks it over lines for a person to read."""
        lines = self.runtime.node_lines()
        words = [*map(shlex.quote, self.container_prefix), *self.torchrun]
        command = "exec " + " ".join(words)
        if not wrap:
            return "; ".join([*lines, command])
        breaks = ("--bind", "--pwd", self.torchrun[0]) if self.container_prefix else ()
        for word in (*breaks, "--nnodes=", "--rdzv_backend=", "--max_restarts=", "-m hpcft.trainer"):
            command = command.replace(f" {word}", f" \\\n      {word}", 1)
        return "".join(f"\n    {line}" for line in [*lines, command])

    def allocation_args(self) -> list[str]:
        """The options of an interactive allocation (salloc / srun --pty) for the same job."""
        return [
            f"--{key}={value}" for key, value in self.sbatch_options if key in ALLOCATION_OPTIONS and value is not None
        ]

    def shell_setup(self) -> list[str]:
        """The lines that give a shell the job's environment: exports, prologue, rendezvous."""
        return [*(f"export {name}={value}" for name, value in self.exports), *self.prologue, *self.rendezvous]


def python_for(profile_python: str) -> str:
    """The Python that runs torchrun on the nodes; "auto" is the interpreter running hpcft (local clusters)."""
    return sys.executable if profile_python == "auto" else profile_python


def cache_dir(job: Job) -> str | None:
    """The profile's cache folder, expanded on the login node (the same user and home as on the nodes)."""
    folder = job.profile.cache_dir
    return os.path.abspath(os.path.expandvars(os.path.expanduser(folder))) if folder else None


def job_env(job: Job) -> dict[str, str]:
    """The job's variables: the profile's `env`, then launch.env (the config wins); HF_HOME defaults to the
    profile's cache folder."""
    cache = cache_dir(job)
    return {**({"HF_HOME": cache} if cache else {}), **job.profile.env, **job.cfg.launch.env}


def job_paths(job: Job) -> list[str]:
    """Every local path the job reads or writes on the nodes (absolute: config.py resolved them)."""
    cfg = job.cfg
    paths = [cfg.output_dir]
    for key in (
        "dataset_prepared_path",
        "base_model",
        "base_model_config",
        "tokenizer_config",
        "lora_model_dir",
        "resume_from_checkpoint",
    ):
        value = getattr(cfg, key, None)
        if isinstance(value, str) and Path(value).is_absolute():
            paths.append(value)
    for ds in [*cfg.datasets, *(cfg.test_datasets or [])]:
        files = [ds.data_files] if isinstance(ds.data_files, str) else list(ds.data_files or [])
        for value in [ds.path, *files]:
            if isinstance(value, str) and Path(value).is_absolute():
                paths.append(value)
    paths += [str(p) for p in eval_and_tracking_paths(cfg)]
    return list(dict.fromkeys(paths))


def job_mounts(job: Job, run_dir: Path) -> list[str]:
    """The profile's and the config's mounts plus the run directory and every path the job uses."""
    own = [str(run_dir), *job_paths(job), *filter(None, [cache_dir(job)])]
    runtime_for(job.profile.runtime).check_mounts(job, own)
    return unique_mounts([*job.cfg.launch.mounts, *own])


def _sbatch_options(job: Job, run_dir: Path, array: str | None, log_kind: str) -> list[tuple[str, str | None]]:
    launch, profile = job.cfg.launch, job.profile
    options: list[tuple[str, str | None]] = [
        ("job-name", str(launch.job_name)),
        ("nodes", str(launch.nodes)),
        ("ntasks-per-node", "1"),
    ]
    if launch.gpus_per_node:
        options.append(
            ("gres", f"gpu:{launch.gpus_per_node}") if profile.gres else ("gpus-per-node", str(launch.gpus_per_node))
        )
    if launch.cpus_per_task:
        options.append(("cpus-per-task", str(launch.cpus_per_task)))
    options.append(("time", launch.time))
    for key in ("account", "partition", "qos", "reservation", "constraint", "mem"):
        if getattr(launch, key):
            options.append((key, str(getattr(launch, key))))
    paths, job_pattern = RunPaths(run_dir), ARRAY_TASK if array else ONE_JOB
    options += [
        ("output", str(paths.log(log_kind, "out", job_pattern))),
        ("error", str(paths.log(log_kind, "err", job_pattern))),
        ("open-mode", "append"),
    ]
    if launch.requeue:
        options += [("requeue", None), ("signal", f"B:USR1@{launch.signal_grace}")]
    if array:
        options.append(("array", array))
    for arg in launch.sbatch_args:  # long options only (the schema checks): --key or --key=value
        key, sep, value = arg[2:].partition("=")
        options.append((key, value if sep else None))
    return options


def _exports(job: Job, run_dir: Path, python: str, array: str | None) -> list[tuple[str, str]]:
    launch = job.cfg.launch
    train_yaml = (
        f'"${{{protocol.RUN_DIR_ENV}}}/points/${{SLURM_ARRAY_TASK_ID}}/{protocol.TRAIN_YAML}"'
        if array
        else f'"${{{protocol.RUN_DIR_ENV}}}/{protocol.TRAIN_YAML}"'
    )
    exports = [
        (protocol.RUN_DIR_ENV, shlex.quote(str(run_dir))),
        (protocol.TRAIN_YAML_ENV, train_yaml),
        (protocol.PYTHON_ENV, shlex.quote(python)),
        (protocol.NPROC_PER_NODE_ENV, str(launch.nproc_per_node)),
        (protocol.STOP_FILE_ENV, protocol.STOP_FILE_SHELL),
        (protocol.DONE_FILE_ENV, protocol.DONE_FILE_SHELL),
        (protocol.HANG_TIMEOUT_ENV, str(launch.hang_timeout)),
    ]
    env = [(name, shell_env_value(value)) for name, value in job_env(job).items()]
    return runtime_for(job.profile.runtime).exports(exports, env, _TRAINER_VARIABLES)


def _prologue(job: Job) -> list[str]:
    profile = job.profile
    lines = []
    if profile.secret_file:
        secret = shlex.quote(str(Path(profile.secret_file).expanduser()))
        lines.append(f"if [ -r {secret} ]; then set -a; . {secret}; set +a; fi")
    lines += runtime_for(profile.runtime).secret_lines(profile)
    return lines + list(profile.setup)


def _torchrun() -> list[str]:
    """torchrun on one node: one rendezvous for all nodes (c10d on the first), no restarts (a failed rank ends
    the job, which Slurm then ends everywhere), then the trainer on the resolved config. No --node_rank: c10d
    assigns the node ranks itself and torchrun says in every log that it ignores the flag."""
    return [
        f'"${protocol.PYTHON_ENV}"',
        "-m",
        "torch.distributed.run",
        '--nnodes="$SLURM_NNODES"',
        f'--nproc_per_node="${protocol.NPROC_PER_NODE_ENV}"',
        "--rdzv_backend=c10d",
        '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"',
        '--rdzv_id="$SLURM_JOB_ID"',
        "--max_restarts=0",
        # torch elastic's error files of this node's ranks, kept in the run directory (one folder per node):
        # `hpcft logs --errors` reads the first failure of the job from them (error_files.py).
        f'--log-dir="${protocol.RUN_DIR_ENV}/{protocol.TORCHELASTIC_DIR}/${{SLURMD_NODENAME:-$(hostname)}}"',
        "-m",
        "hpcft.trainer",
        "train",
        f'"${protocol.TRAIN_YAML_ENV}"',
    ]


def make_plan(job: Job, run_dir: Path, array: str | None = None, log_kind: str = JOB_LOG) -> JobPlan:
    """The plan of a validated job in `run_dir` (for a sweep, `array` is the job array's index range); its logs
    are RunPaths' `log_kind` ones."""
    profile, launch = job.profile, job.cfg.launch
    runtime = runtime_for(profile.runtime)
    if runtime.image_format is not None and not launch.image:
        raise ConfigError(
            f"profile '{profile.name}' runs in a container ({profile.runtime}) but no image is set; "
            "set launch.image in the config or the profile, or pass --image"
        )
    mounts = job_mounts(job, run_dir)
    env = job_env(job)
    srun_args, prefix = runtime.container(job, run_dir, mounts, env)
    rendezvous = [
        'MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
        f"MASTER_PORT=$(( {profile.rdzv_port_base} + SLURM_JOB_ID % 10000 ))",
        "export MASTER_ADDR MASTER_PORT",
    ]
    return JobPlan(
        run_dir=run_dir,
        runtime=runtime,
        sbatch_options=_sbatch_options(job, run_dir, array, log_kind),
        exports=_exports(job, run_dir, python_for(profile.python), array),
        prologue=_prologue(job),
        rendezvous=rendezvous,
        mounts=mounts,
        container_env=env,
        create_dirs=[
            *filter(None, [job.cfg.output_dir, job.cfg.dataset_prepared_path, cache_dir(job)]),
            *map(str, folders_to_create(job.cfg)),
        ],
        image=enroot_image(launch.image or ""),
        # One failed node ends the step rather than leaving the others in a collective.
        step_args=[
            "--kill-on-bad-exit=1",
            "--wait=60",
            "--ntasks-per-node=1",
            *([f"--cpus-per-task={launch.cpus_per_task}"] if launch.cpus_per_task else []),
        ],
        container_srun_args=srun_args,
        extra_srun_args=list(launch.srun_args),
        container_prefix=prefix,
        torchrun=_torchrun(),
    )
