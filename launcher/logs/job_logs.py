"""A job's logs: finding its files, printing them with node/rank labels (streamed by logstream.py), following the
job to its end, and naming its first failure (`hpcft logs --errors`: error_files.py, else log_scan.py)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import IO

from hpcft.core.manifest import read_manifest
from hpcft.core.run_paths import RunPaths
from hpcft.launcher import slurm
from hpcft.launcher.jobs.runs import RunRef, manifest_job_id
from hpcft.launcher.logs.error_files import ERROR_DIR, format_report, read_error_files
from hpcft.launcher.logs.log_scan import scan_logs
from hpcft.launcher.logs.logstream import (
    FileCursor,
    LogView,
    byte_writer,
    print_new,
    print_tail,
)
from hpcft.launcher.slurm import JobInfo, SlurmError

_SUBMITIT_TASK = re.compile(r"_(\d+)_log\.(?:out|err)$")


def log_files(run: RunRef) -> list[Path]:
    """The job's stdout/stderr files: in the run directory (logs/, submitit/), else where Slurm says. A run's
    preprocessing job's log comes first (preprocess-<id>.out sorts before slurm-<id>.out)."""
    if run.run_dir is not None:
        ids = [run.job_id]
        pre = _preprocess_job_id(run)
        if pre:
            ids.append(pre)
        found = RunPaths(run.run_dir).job_logs(ids)
        return sorted(found, key=_log_sort_key)
    paths: list[Path] = []
    for record in slurm.scontrol_show_job(run.job_id):
        for key in ("StdOut", "StdErr"):
            if record.get(key) and Path(record[key]) not in paths:
                paths.append(Path(record[key]))
    return [p for p in paths if p.is_file()]


def _log_sort_key(path: Path) -> tuple[str, int, str]:
    match = _SUBMITIT_TASK.search(path.name)
    stem = path.name[: match.start()] if match else path.stem
    return (stem, int(match.group(1)) if match else -1, path.suffix)


def use_color(out: IO[str]) -> bool:
    """Colour on a terminal only: never in a pipe or a file, nor with NO_COLOR set (https://no-color.org)."""
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def follow_job(
    run: RunRef,
    out: IO[str] | None = None,
    *,
    follow: bool = True,
    rank: int | None = None,
    grep: re.Pattern[bytes] | None = None,
    tail: int | None = None,
    poll: float = 1.0,
    timeout: float | None = None,
) -> int:
    """Print the job's logs, from the start or (tail) their last lines, following them until the job ends when
    follow; returns the job's exit status. Files are read in blocks: memory does not grow with their size."""
    out = out or sys.stdout
    write = byte_writer(out)
    deadline = None if timeout is None else time.monotonic() + timeout
    members = _members_or_fail(run.job_id)
    cursors: dict[Path, tuple[FileCursor, LogView]] = {}
    shown_state = ""
    color = use_color(out)
    first_pass = True
    while True:
        done = all(m.finished for m in members)
        if follow:
            shown_state = _note_state_change(members, shown_state)
        for path in log_files(run):
            if path not in cursors:
                cursor, view = FileCursor(path), _view_for(path, members, rank, grep, color)
                cursors[path] = (cursor, view)
                if tail is not None and first_pass:  # a file that appears later is new: all of it is shown
                    print_tail(cursor, view, tail, write)
            cursor, view = cursors[path]
            _refresh_hosts(view, path, members)
            # Once the job has ended its files are complete: read to the end, unfinished last lines included.
            print_new(cursor, view, write, final=done or not follow)
        first_pass = False
        if done or not follow:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(f"job {run.job_id} still {members[0].state} after {timeout:.0f} s")
        time.sleep(poll)
        members = _members_or_fail(run.job_id)
    if rank is not None and cursors and not any(view.labelled for _, view in cursors.values()):
        print(
            "hpcft: these logs carry no rank labels (the job's srun has no --label); --rank shows nothing",
            file=sys.stderr,
        )
    if not done:
        return 0
    code = max(slurm.exit_status(m) for m in slurm.accounted_when_ended(run.job_id, members))
    if code:
        _say_if_preprocessing_failed(run)
    return code


def _say_if_preprocessing_failed(run: RunRef) -> None:
    """A failed preprocessing job makes Slurm cancel the training job (--kill-on-invalid-dep): say which failed."""
    pre = _preprocess_job_id(run)
    if not pre:
        return
    failed = [m for m in slurm.job_members(pre) if m.finished and m.state != "COMPLETED"]
    if failed:
        print(
            f"hpcft: preprocessing job {pre} {failed[0].state} (its error is above, in logs/preprocess-{pre}.err); "
            f"training job {run.job_id} was cancelled without starting",
            file=sys.stderr,
            flush=True,
        )


def _preprocess_job_id(run: RunRef) -> str | None:
    manifest = RunPaths(run.run_dir).manifest if run.run_dir else None
    if manifest is None or not manifest.is_file() or "_" in run.job_id:
        return None
    return manifest_job_id(run.run_dir, read_manifest(run.run_dir), "preprocess", "job_id")


def _member_of(path: Path, members: list[JobInfo]) -> tuple[JobInfo, bool]:
    """The job (array task) whose file this is, and whether the job is an array."""
    member = members[0]
    by_task = {m.array_task_id: m for m in members if m.array_task_id}
    match = re.search(rf"(?<![0-9]){re.escape(member.array_job_id)}_(\d+)(?![0-9])", path.name)
    if match and match.group(1) in by_task:
        member = by_task[match.group(1)]
    return member, bool(by_task)


def _view_for(
    path: Path, members: list[JobInfo], rank: int | None, grep: re.Pattern[bytes] | None, color: bool
) -> LogView:
    member, array = _member_of(path, members)
    submitit_task = _SUBMITIT_TASK.search(path.name)
    return LogView(
        hosts=_hosts(member),
        prefix=any(m.nodes > 1 for m in members),
        rank=rank,
        grep=grep,
        job_label=f"[{member.job_id}]" if array else "",
        fixed_task=int(submitit_task.group(1)) if submitit_task else None,
        color=color,
    )


def _refresh_hosts(view: LogView, path: Path, members: list[JobInfo]) -> None:
    """A pending job gets its nodes when it starts (and new ones when requeued): relabel from then on."""
    hosts = _hosts(_member_of(path, members)[0])
    if hosts and hosts != view.hosts:
        view.hosts = hosts
        view.forget_prefixes()


def _note_state_change(members: list[JobInfo], shown: str) -> str:
    """While following, say on stderr when the job waits, starts, is requeued or ends (the logs say nothing then)."""
    first = members[0]
    state = (
        f"{first.state} {first.reason}"
        if first.state == "PENDING" and first.reason not in ("", "None")
        else first.state
    )
    if first.restarts:
        state += f" (restart {first.restarts})"
    if state != shown:
        where = f" on {first.nodelist}" if first.state == "RUNNING" and first.nodelist else ""
        print(f"hpcft: job {first.array_job_id} {state}{where}", file=sys.stderr, flush=True)
    return state


def _members_or_fail(job_id: str) -> list[JobInfo]:
    members = slurm.job_members(job_id)
    if not members:
        raise SlurmError(f"job {job_id} is unknown to Slurm (not in squeue, scontrol or sacct); check the id")
    return members


def _hosts(member: JobInfo) -> list[str]:
    return slurm.expand_hostlist(member.nodelist) if member.nodelist not in ("", "None assigned") else []


def show_errors(run: RunRef, out: IO[str] | None = None) -> int:
    """Print the job's first failure (rank, host, traceback) and a summary of the other failures; 1 when none.

    torch elastic's error files in the run directory come first (exact: each rank's own exception and its time);
    the logs are scanned, in blocks, when there are none (a crash before the trainer started, another tool's job).
    """
    out = out or sys.stdout
    manifest = read_manifest(run.run_dir) if run.run_dir else {}
    launch = manifest.get("launch") or {}
    world_size = None
    if isinstance(launch.get("nodes"), int):  # launch.nproc_per_node: procs_per_node, else gpus_per_node, else 1
        world_size = launch["nodes"] * (launch.get("procs_per_node") or launch.get("gpus_per_node") or 1)
    report = None
    if run.run_dir is not None and "_" not in run.job_id:  # an array task's files carry its own job id
        report = read_error_files(run.run_dir, run.job_id)
        if report is not None and report.world_size is None:
            report.world_size = world_size
    paths = log_files(run)
    if report is None:
        members = slurm.job_members(run.job_id)
        hosts = _hosts(_member_of(paths[0], members)[0]) if members and paths else []
        file_tasks = {p: int(m.group(1)) for p in paths if (m := _SUBMITIT_TASK.search(p.name))}
        report = scan_logs(
            [p for p in paths if p.suffix == ".err"] + [p for p in paths if p.suffix != ".err"],
            hosts,
            world_size,
            file_tasks,
        )
    if report is None:
        print(
            f"hpcft: no error file and no Python traceback for job {run.job_id} ({len(paths)} log file(s), "
            f"{run.run_dir / ERROR_DIR if run.run_dir else 'no run directory'})",
            file=sys.stderr,
        )
        return 1
    out.write(format_report(report, run.job_id))
    out.flush()
    return 0
