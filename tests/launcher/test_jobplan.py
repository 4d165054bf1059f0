"""One JobPlan, three consumers: job.sbatch, the submitit backend and `hpcft interactive` run the same srun step
with the same environment, mounts and torchrun command, for every shipped profile.

Each path's own shell code is run for real (bash), with `srun`, `sbatch` and `scontrol` replaced by recorders
on PATH: what reaches srun (its arguments, the node command, the environment) is compared across the paths.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from hpcft.launcher.config import load_job
from hpcft.launcher.jobplan import make_plan
from hpcft.launcher.jobs.interactive import prepare_interactive
from hpcft.launcher.jobs.submitit_backend import submit_with_submitit
from hpcft.launcher.render import render_run_dir

IMAGE = {
    "cscs": "/capstor/store/hpcft.sqsh",
    "pyxis": "nvcr.io/nvidia/pytorch:25.01-py3",
    "apptainer": "/scratch/images/hpcft.sif",
    "local": None,
}
RECORDER = """#!/bin/bash
# Records what it was asked to run: one folder per call, arguments NUL-separated, the environment as env -0 does.
out="$RECORD_DIR/$(date +%s%N)-$$"
mkdir -p "$out"
printf '%s\\0' "$@" > "$out/argv"
env -0 > "$out/env"
"""
SCONTROL = "#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && printf 'node1\\nnode2\\n'\n"
SBATCH = '#!/bin/sh\ncp "$1" "$RECORD_DIR/submitit.sbatch"\necho \'Submitted batch job 4242\'\n'
# The variables a job's step depends on (the rest is the machine's own environment).
_OURS = re.compile(r"^(HPCFT_|APPTAINERENV_|MASTER_|HF_|NCCL_|FI_|TORCH_|OMP_|DS_|TOKENIZERS_|TRITON_|CUDA_)")


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in {"srun": RECORDER, "scontrol": SCONTROL, "sbatch": SBATCH}.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def _node_env(tmp_path: Path, record: Path) -> dict[str, str]:
    """What Slurm sets in a batch job, and a user's secret token (passed by name to the container)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RECORD_DIR": str(record),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NUM_NODES": "2",
        "HF_TOKEN": "hf_test_only_not_a_token",
        "SCRATCH": "/scratch/u",
    }


def _recorded(record: Path) -> tuple[list[str], dict[str, str]]:
    calls = sorted(p for p in record.iterdir() if p.is_dir())
    assert len(calls) == 1, calls
    argv = (calls[0] / "argv").read_bytes().decode().split("\0")[:-1]
    env = dict(item.split("=", 1) for item in (calls[0] / "env").read_bytes().decode().split("\0") if "=" in item)
    return argv, {k: v for k, v in env.items() if _OURS.match(k)}


def _run(script: str, env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _normal(command: str) -> str:
    """The node command with job.sbatch's line breaks for readers taken out."""
    command = re.sub(r" \\\n\s*", " ", command)
    return "; ".join(line.strip() for line in command.splitlines() if line.strip())


def _split_bash_c(argv: list[str]) -> tuple[list[str], str]:
    index = argv.index("bash")
    assert argv[index + 1] == "-c"
    return argv[:index], argv[index + 2]


@pytest.mark.parametrize("profile", ["cscs", "pyxis", "apptainer", "local"])
def test_sbatch_submitit_and_interactive_run_the_same_step(profile, workspace, bin_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(workspace)
    cli = {"nodes": 2, **({"image": IMAGE[profile]} if IMAGE[profile] else {})}
    job = load_job(workspace / "cfg.yaml", profile, cli_launch=cli)
    seen = {}

    # 1. job.sbatch, run as Slurm would run it on the first node.
    record = tmp_path / f"record-sbatch-{profile}"
    record.mkdir()
    run_dir = render_run_dir(job, out_dir=tmp_path / f"run-{profile}")
    _run(f"bash {shlex.quote(str(run_dir / 'job.sbatch'))}", _node_env(tmp_path, record), run_dir)
    argv, env = _recorded(record)
    srun_args, command = _split_bash_c(argv)
    assert srun_args[0] == "--label"
    seen["sbatch"] = (srun_args[1:], _normal(command), env)

    # 2. submitit: the batch script it writes (setup lines, then srun), and the task it pickled.
    record = tmp_path / f"record-submitit-{profile}"
    record.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(record))
    handle = submit_with_submitit(job, make_plan(job, run_dir))
    script = (record / "submitit.sbatch").read_text()
    _run(f"bash {shlex.quote(str(record / 'submitit.sbatch'))}", _node_env(tmp_path, record), run_dir)
    argv, env = _recorded(record)
    task = handle.submission().function
    plan_args = make_plan(job, run_dir).srun_args
    start = argv.index(plan_args[0])
    assert "#SBATCH --nodes=2" in script
    seen["submitit"] = (argv[start : start + len(plan_args)], _normal(task.command), env)

    # 3. interactive, on two nodes: a shell on the first node with interactive.rc, then the printed command.
    record = tmp_path / f"record-interactive-{profile}"
    record.mkdir()
    session, _, line = prepare_interactive(job, out_dir=tmp_path / f"session-{profile}")
    rc = shlex.quote(str(session / "interactive.rc"))
    _run(f". {rc} >/dev/null; {line}", _node_env(tmp_path, record), session)
    argv, env = _recorded(record)
    srun_args, command = _split_bash_c(argv)
    assert srun_args[:4] == ["--overlap", "--nodes=2", "--ntasks=2", "--kill-on-bad-exit=1"]
    # The session has its own run directory: compare with the batch job's after renaming it.
    same = str(run_dir)
    seen["interactive"] = (
        [a.replace(str(session), same) for a in srun_args[3:]],
        _normal(command).replace(str(session), same),
        {k: v.replace(str(session), same) for k, v in env.items()},
    )

    assert seen["submitit"] == seen["sbatch"]
    assert seen["interactive"] == seen["sbatch"]
    srun_args, command, env = seen["sbatch"]
    assert env["HPCFT_STOP_FILE"] == f"{run_dir}/stop-4242" and env["HPCFT_HANG_TIMEOUT"] == "1800"
    assert env["MASTER_ADDR"] == "node1"
    assert "torch.distributed.run" in command and "--rdzv_backend=c10d" in command
    assert "--node_rank" not in command  # c10d assigns node ranks; torchrun would log that it ignores the flag
    if profile == "apptainer":
        assert env["APPTAINERENV_HF_TOKEN"] == "hf_test_only_not_a_token"
        assert env["APPTAINERENV_HPCFT_STOP_FILE"] == env["HPCFT_STOP_FILE"]
