"""`hpcft status`: one row per job (per task for arrays) from Slurm's view plus the run's last metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcft.core.manifest import read_manifest
from hpcft.core.protocol import last_metrics
from hpcft.core.run_paths import RunPaths
from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import RunRef, manifest_job_id
from hpcft.launcher.slurm import JobInfo, SlurmError


@dataclass
class StatusRow:
    job_id: str
    name: str
    state: str
    elapsed: str
    nodes: int
    restarts: int
    step: int | None = None
    loss: float | None = None
    run_dir: str = ""


def _output_dir_for(member: JobInfo, manifest: dict[str, Any]) -> str | None:
    points = (manifest.get("sweep") or {}).get("points")
    if points and member.array_task_id and member.array_task_id.isdigit():
        index = int(member.array_task_id)
        return points[index]["output_dir"] if index < len(points) else None
    return manifest.get("output_dir")


def preprocess_job_id(run: RunRef) -> str | None:
    """The run's preprocessing job (submitted before the training job), from its manifest."""
    if run.run_dir is None or not RunPaths(run.run_dir).manifest.is_file():
        return None
    return manifest_job_id(run.run_dir, read_manifest(run.run_dir), "preprocess", "job_id")


def with_preprocessing_jobs(runs: list[RunRef]) -> list[RunRef]:
    """The runs, each preceded by its preprocessing job: status shows the pair as one run."""
    out = []
    for run in runs:
        pre = preprocess_job_id(run)
        if pre and "_" not in run.job_id:
            out.append(RunRef(pre, run.run_dir))
        out.append(run)
    return out


def status_rows(runs: list[RunRef], problems: list[str] | None = None) -> list[StatusRow]:
    """One row per job (per task for arrays): squeue for live jobs, sacct for ended ones and restart counts; a
    run's preprocessing job gets its own row, just before the training job's. When sacct fails for jobs that have
    left the queue, their rows say UNKNOWN and `problems` gets why (the caller exits non-zero: not a state)."""
    runs = with_preprocessing_jobs(runs)
    ids = list(dict.fromkeys(r.job_id.split("_")[0] for r in runs))
    live = slurm.squeue_jobs(ids)
    try:
        accounted = {m.job_id: m for m in slurm.sacct_jobs(ids)}
    except SlurmError as exc:  # no accounting (or it failed): live jobs only, and the others said to be unknown
        accounted = {}
        gone = [job_id for job_id in ids if job_id not in {m.array_job_id for m in live}]
        if gone and problems is not None:
            problems.append(f"{exc}; the state of job {', '.join(gone)} (no longer in the queue) is unknown")
    # Grouped once by job: an index of 10,000 runs or a 1,000-task array is one pass, not runs x members.
    by_job: dict[str, dict[str, JobInfo]] = {}
    for member in accounted.values():
        by_job.setdefault(member.array_job_id, {})[member.job_id] = member
    for member in live:
        # The controller's view wins while it holds the job; accounting fills in the rest and the restarts.
        group = by_job.setdefault(member.array_job_id, {})
        member.restarts = max(member.restarts, group[member.job_id].restarts if member.job_id in group else 0)
        group[member.job_id] = member
    manifests: dict[Path, dict[str, Any]] = {}
    rows: list[StatusRow] = []
    for run in runs:
        members = by_job.get(run.job_id.split("_")[0], {})
        manifest = {}
        if run.run_dir:
            if run.run_dir not in manifests:
                manifests[run.run_dir] = read_manifest(run.run_dir)
            manifest = manifests[run.run_dir]
        if not members:
            rows.append(
                StatusRow(
                    run.job_id, manifest.get("job_name") or "", "UNKNOWN", "", 0, 0, run_dir=str(run.run_dir or "")
                )
            )
            continue
        for member in sorted(members.values(), key=slurm.task_order):
            if "_" in run.job_id and member.job_id != run.job_id:
                continue
            preprocessing = run.job_id == (manifest.get("preprocess") or {}).get("job_id")
            step, loss = (None, None) if preprocessing else last_metrics(_output_dir_for(member, manifest))
            rows.append(
                StatusRow(
                    member.job_id,
                    member.name,
                    member.state,
                    member.elapsed,
                    member.nodes,
                    member.restarts,
                    step,
                    loss,
                    str(run.run_dir or ""),
                )
            )
    return rows


def attempt_lines(manifest: dict[str, Any]) -> list[str]:
    """What the trainer recorded of each attempt (manifest "attempts"): world size, resume, ZeRO conversion."""
    lines = []
    for number, attempt in enumerate(manifest.get("attempts") or [], start=1):
        try:
            lines.append(_attempt_line(number, attempt))
        except (KeyError, TypeError, ValueError):  # a record edited by hand: the rest of the run still shows
            lines.append(f"attempt {number}: (unreadable record in manifest.json)")
    return lines


def _attempt_line(number: int, attempt: dict[str, Any]) -> str:
    """One attempt, as recorded by the trainer (trainer/elastic.record_attempt)."""
    text = f"attempt {number}: {attempt['world_size']} rank(s)"
    if attempt.get("resumed_from"):
        text += (
            f", resumed from {Path(attempt['resumed_from']).name} with gradient_accumulation_steps "
            f"{attempt['gradient_accumulation_steps']}"
        )
    else:
        text += ", from the start"
    conversion = attempt.get("conversion")
    if conversion:
        text += (
            f"; ZeRO checkpoint converted from {conversion['from_world_size']} to "
            f"{conversion['to_world_size']} rank(s) in {conversion['seconds']:.1f} s"
        )
    return text


def run_details(runs: list[RunRef]) -> str:
    """Below the table, per run: its jobs and attempts as the manifest records them."""
    blocks = []
    for run in runs:
        if run.run_dir is None or not RunPaths(run.run_dir).manifest.is_file():
            continue
        lines = attempt_lines(read_manifest(run.run_dir))
        if lines:
            blocks.append(f"{run.job_id}:\n" + "\n".join(f"  {line}" for line in lines))
    return "\n".join(blocks)


def format_status_table(rows: list[StatusRow]) -> str:
    header = ("JOBID", "NAME", "STATE", "ELAPSED", "NODES", "RESTARTS", "STEP", "LOSS", "RUN_DIR")
    table = [header] + [
        (
            r.job_id,
            r.name,
            r.state,
            r.elapsed,
            str(r.nodes),
            str(r.restarts),
            "-" if r.step is None else str(r.step),
            "-" if r.loss is None else f"{r.loss:.4g}",
            r.run_dir,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in table
    )
