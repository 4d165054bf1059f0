"""`hpcft doctor --profile P --nodes N`: before a long multi-node job, check the nodes, the container and the
network with a short job that runs exactly like training (the same JobPlan: Slurm options, container, mounts,
environment, torchrun), but with `python -m hpcft.trainer doctor` (trainer/doctor_probe.py) in place of the
training. Prints one table (doctor_report.py), names slow or broken nodes and the `--exclude` line.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.quoting import sbatch_value
from hpcft.core.run_paths import DOCTOR_LOG, RunPaths
from hpcft.launcher import __version__, slurm
from hpcft.launcher.config import Job, load_job
from hpcft.launcher.jobs.runs import RunRef, record_submission

DOCTOR_DIR = "doctor"
# A doctor job is short and must not requeue itself: a failure is the finding.
DOCTOR_LAUNCH = {"requeue": False, "job_name": "hpcft-doctor"}
_SKIPPED_OPTIONS = ("requeue", "signal", "output", "error", "open-mode")


def doctor_job(profile: str, config: str | None, overrides: list[str], cli_launch: dict[str, Any]) -> Job:
    """The job whose environment the doctor checks: the training config's, or the profile's alone."""
    launch = {"time": "00:15:00", **DOCTOR_LAUNCH, **cli_launch}
    if config:
        return load_job(config, profile, overrides=overrides, cli_launch=launch)
    with tempfile.TemporaryDirectory() as tmp:
        # No training config: a placeholder model and data (never read); outputs go to the current folder.
        placeholder = Path(tmp) / "doctor.yaml"
        placeholder.write_text(
            f"base_model: none\ndatasets:\n  - path: none\noutput_dir: {json.dumps(str(Path.cwd()))}\n"
        )
        return load_job(placeholder, profile, overrides=overrides, cli_launch=launch)


def doctor_script(job: Job, run_dir: Path, max_mib: int, write_mib: int, iters: int) -> str:
    """doctor.sbatch: the training job's plan with the probe in place of the trainer."""
    from hpcft.launcher.jobplan import make_plan

    plan = make_plan(job, run_dir, log_kind=DOCTOR_LOG)
    probe = [
        "-m",
        "hpcft.trainer",
        "doctor",
        "--out",
        shlex.quote(str(run_dir / DOCTOR_DIR)),
        "--max-mib",
        str(max_mib),
        "--write-mib",
        str(write_mib),
        "--iters",
        str(iters),
        "--write-dir",
        shlex.quote(job.cfg.output_dir),
        "--image",
        shlex.quote(job.cfg.launch.image or "none"),
    ]
    cut = plan.torchrun.index("hpcft.trainer") - 1  # "-m hpcft.trainer train $HPCFT_TRAIN_YAML" -> the probe
    plan = dataclasses.replace(plan, torchrun=[*plan.torchrun[:cut], *probe])
    lines = [
        "#!/bin/bash",
        f"# Written by `hpcft doctor` {__version__}: the training job's container, mounts and environment",
        "# (the same plan as job.sbatch), running the node probe instead of training.",
    ]
    for key, value in plan.sbatch_options:
        if key not in _SKIPPED_OPTIONS:
            lines.append(f"#SBATCH --{key}" + ("" if value is None else f"={sbatch_value(value)}"))
    lines += [
        f"#SBATCH --output={sbatch_value(RunPaths(run_dir).log(DOCTOR_LOG, 'out'))}",
        f"#SBATCH --error={sbatch_value(RunPaths(run_dir).log(DOCTOR_LOG, 'err'))}",
        "",
        "set -eo pipefail",
        'echo "hpcft doctor: job ${SLURM_JOB_ID} on ${SLURM_NNODES} node(s): ${SLURM_JOB_NODELIST}"',
        *plan.shell_setup(),
        "# shellcheck disable=SC2016",
        "srun --label "
        + " ".join(shlex.quote(a) for a in plan.srun_args)
        + " bash -c "
        + shlex.quote(plan.node_command(wrap=True)),
    ]
    return "\n".join(lines) + "\n"


class _Quiet:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def run_doctor(
    job: Job, *, max_mib: int, write_mib: int, iters: int, out_dir: str | None, command_line: list[str]
) -> tuple[int, str]:
    """Submit the doctor job, wait for it, read what each node found. Returns (exit code, the report text)."""
    from hpcft.launcher.jobs.doctor_report import analyse, format_result
    from hpcft.launcher.logs.job_logs import follow_job
    from hpcft.launcher.render import render_run_dir, target_run_dir
    from hpcft.launcher.runtimes.image import check_image

    check_image(job)
    target = target_run_dir(job, out_dir)
    script = doctor_script(job, target, max_mib, write_mib, iters)
    run_dir = render_run_dir(
        job, out_dir=target, command_line=command_line, extra_files={"doctor.sbatch": script, f"{DOCTOR_DIR}/.keep": ""}
    )
    job_id = slurm.submit_batch(run_dir / "doctor.sbatch", cwd=run_dir)
    print(f"hpcft doctor: job {job_id} on {job.cfg.launch.nodes} node(s): {run_dir}", file=sys.stderr)
    for warning in record_submission(run_dir, job_id, "sbatch"):
        print(f"hpcft: warning: {warning}", file=sys.stderr)
    code = follow_job(RunRef(job_id, run_dir), out=_Quiet())
    members = slurm.job_members(job_id)
    hosts = (
        slurm.expand_hostlist(members[0].nodelist)
        if members and members[0].nodelist not in ("", "None assigned")
        else []
    )
    result = analyse(
        run_dir / DOCTOR_DIR,
        gpus_per_node=job.cfg.launch.gpus_per_node,
        expected_busbw=job.profile.allreduce_busbw_gbs,
        expected_network=job.cfg.launch.env.get("NCCL_NET") or job.profile.env.get("NCCL_NET"),
        hpcft_version=__version__,
        hosts=hosts,
    )
    if not result.nodes:
        raise ConfigError(f"the doctor job {job_id} wrote no report (exit {code}); see hpcft logs {job_id}")
    pair_bytes = next((r.get("pair_bytes") for r in _rank0(run_dir / DOCTOR_DIR)), None)
    text = format_result(result, job.profile.allreduce_busbw_gbs, pair_bytes)
    return (1 if result.bad_hosts or code else 0), text


def _rank0(folder: Path) -> list[dict[str, Any]]:
    path = folder / "rank-0.json"
    try:
        return [json.loads(path.read_text())]
    except (OSError, json.JSONDecodeError):
        return []
