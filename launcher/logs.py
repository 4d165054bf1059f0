"""A job's logs: finding its files, tailing them with node/rank labels, following the job to its end, and
finding the first traceback of the failing rank (`hpcft logs`, `--errors`)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hpcft.launcher import slurm
from hpcft.launcher.runs import RunRef
from hpcft.launcher.slurm import JobInfo, SlurmError

_SRUN_LABEL = re.compile(r"^\s*(\d+): ?(.*)$", re.S)
_SRUN_TASK_FAILED = re.compile(r"srun: error: (\S+): tasks? (\d+)(?:-\d+)?: (?:Exited|Killed|Terminated)")
_SUBMITIT_TASK = re.compile(r"_(\d+)_log\.(?:out|err)$")


def log_files(run: RunRef) -> list[Path]:
    """The job's stdout/stderr files: in the run directory (logs/, submitit/), else where Slurm says. A run's
    preprocessing job's log comes first (preprocess-<id>.out sorts before slurm-<id>.out)."""
    if run.run_dir is not None:
        ids = [run.job_id]
        pre = _preprocess_job_id(run)
        if pre:
            ids.append(pre)
        token = re.compile(r"(?<![0-9])(" + "|".join(re.escape(i) for i in ids) + r")(?![0-9])")
        found = []
        for sub in ("logs", "submitit"):
            folder = run.run_dir / sub
            if folder.is_dir():
                found += [p for p in folder.iterdir()
                          if p.suffix in (".out", ".err") and token.search(p.name)]
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


@dataclass
class LogLine:
    text: str
    task: int | None  # the Slurm task (= node rank: one task per node), when known
    source: Path


class LogTailer:
    """Reads what was appended to a set of log files since the last call, line by line."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}

    def read_new(self, paths: list[Path], final: bool = False) -> list[LogLine]:
        lines: list[LogLine] = []
        for path in paths:
            try:
                with path.open("rb") as handle:
                    handle.seek(self._offsets.get(path, 0))
                    chunk = handle.read()
                    self._offsets[path] = handle.tell()
            except FileNotFoundError:
                continue
            text = self._partial.pop(path, "") + chunk.decode(errors="replace")
            parts = text.split("\n")
            if not final:  # keep an unfinished last line for the next read
                self._partial[path] = parts.pop()
            elif parts and parts[-1] == "":
                parts.pop()
            submitit_task = _SUBMITIT_TASK.search(path.name)
            for raw in parts:
                lines.append(_labelled(raw.rstrip("\r"), path, submitit_task))
        return lines


def _labelled(raw: str, path: Path, submitit_task: re.Match[str] | None) -> LogLine:
    if submitit_task:
        return LogLine(raw, int(submitit_task.group(1)), path)
    match = _SRUN_LABEL.match(raw)
    if match:  # `srun --label` output: "1: text"
        return LogLine(match.group(2), int(match.group(1)), path)
    return LogLine(raw, None, path)


_RANK_COLORS = ("36", "33", "35", "32", "34", "91", "96", "93")  # ANSI: cyan, yellow, magenta, green, ...


def use_color(out: IO[str]) -> bool:
    """Colour on a terminal only: never in a pipe or a file, nor with NO_COLOR set (https://no-color.org)."""
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def format_line(line: LogLine, hosts: list[str], prefix: bool, color: bool = False) -> str:
    if not prefix or line.task is None:
        return line.text
    host = hosts[line.task] if line.task < len(hosts) else "?"
    label = f"[{host}/{line.task}]"
    if color:
        label = f"\033[{_RANK_COLORS[line.task % len(_RANK_COLORS)]}m{label}\033[0m"
    return f"{label} {line.text}"


def follow_job(run: RunRef, out: IO[str] | None = None, *, follow: bool = True, rank: int | None = None,
               poll: float = 1.0, timeout: float | None = None) -> int:
    """Print the job's logs (following them until the job ends when follow); returns the job's exit status."""
    out = out or sys.stdout
    tailer = LogTailer()
    deadline = None if timeout is None else time.monotonic() + timeout
    members = _members_or_fail(run.job_id)
    shown_state = ""
    while True:
        done = all(m.finished for m in members)
        if follow:
            shown_state = _note_state_change(members, shown_state)
        # Once the job has ended its files are complete: read to the end, unfinished last lines included.
        _print_lines(tailer.read_new(log_files(run), final=done or not follow), members, out, rank)
        if done or not follow:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(f"job {run.job_id} still {members[0].state} after {timeout:.0f} s")
        time.sleep(poll)
        members = _members_or_fail(run.job_id)
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
        print(f"hpcft: preprocessing job {pre} {failed[0].state} (its error is above, in logs/preprocess-{pre}.err); "
              f"training job {run.job_id} was cancelled without starting", file=sys.stderr, flush=True)


def _preprocess_job_id(run: RunRef) -> str | None:
    manifest = run.run_dir / "manifest.json" if run.run_dir else None
    if manifest is None or not manifest.is_file() or "_" in run.job_id:
        return None
    return (json.loads(manifest.read_text()).get("preprocess") or {}).get("job_id")


def _note_state_change(members: list[JobInfo], shown: str) -> str:
    """While following, say on stderr when the job waits, starts, is requeued or ends (the logs say nothing then)."""
    first = members[0]
    state = f"{first.state} {first.reason}" if first.state == "PENDING" and first.reason not in ("", "None") \
        else first.state
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


def _print_lines(lines: list[LogLine], members: list[JobInfo], out: IO[str], rank: int | None) -> None:
    """Write lines prefixed by node/rank (multi-node jobs) and by array task (sweeps)."""
    multi_node = any(m.nodes > 1 for m in members)
    color = use_color(out)
    by_task = {m.array_task_id: m for m in members if m.array_task_id}
    if rank is not None and lines and all(line.task is None for line in lines):
        print("hpcft: these logs carry no rank labels (the job's srun has no --label); --rank shows nothing",
              file=sys.stderr)
    for line in lines:
        if rank is not None and line.task != rank:
            continue
        member = members[0]
        task_match = re.search(rf"(?<![0-9]){re.escape(member.array_job_id)}_(\d+)(?![0-9])", line.source.name)
        if task_match and task_match.group(1) in by_task:
            member = by_task[task_match.group(1)]
        text = format_line(line, _hosts(member), multi_node, color)
        out.write(f"[{member.job_id}] {text}\n" if by_task else text + "\n")
    out.flush()


def _hosts(member: JobInfo) -> list[str]:
    return slurm.expand_hostlist(member.nodelist) if member.nodelist not in ("", "None assigned") else []


@dataclass
class Traceback:
    task: int | None
    text: str
    source: Path


def first_traceback(lines: list[LogLine]) -> Traceback | None:
    """The first Python traceback of the first task srun reports as failed (else the first traceback at all)."""
    failed = next((int(m.group(2)) for line in lines if (m := _SRUN_TASK_FAILED.search(line.text))), None)
    tracebacks = _tracebacks(lines)
    for tb in tracebacks:
        if failed is None or tb.task == failed:
            return tb
    return tracebacks[0] if tracebacks else None


def _tracebacks(lines: list[LogLine]) -> list[Traceback]:
    found: list[Traceback] = []
    open_blocks: dict[tuple[Path, int | None], list[str]] = {}
    for line in lines:
        key = (line.source, line.task)
        text = re.sub(r"^\[(?:rank|default)\d+\]: ?", "", line.text)  # torchrun's per-worker prefix
        if text.startswith("Traceback (most recent call last):"):
            open_blocks[key] = [text]
        elif key in open_blocks:
            open_blocks[key].append(text)
            if text and not text[0].isspace():  # "ValueError: ..." ends the traceback
                found.append(Traceback(line.task, "\n".join(open_blocks.pop(key)), line.source))
    return found


def show_errors(run: RunRef, out: IO[str] | None = None) -> int:
    """Print the first traceback of the first failing rank; 1 when none is found."""
    out = out or sys.stdout
    tailer = LogTailer()
    paths = log_files(run)
    lines = tailer.read_new([p for p in paths if p.suffix == ".err"] + [p for p in paths if p.suffix == ".out"],
                            final=True)
    tb = first_traceback(lines)
    if tb is None:
        print(f"hpcft: no Python traceback in the logs of job {run.job_id} ({len(paths)} file(s))", file=sys.stderr)
        return 1
    out.write(f"first traceback{_where(tb, lines, run.job_id)} ({tb.source}):\n{tb.text}\n")
    return 0


# torchrun prints a worker's global rank with its failure ("rank : 1 (local_rank: 0)"), and every rank of the
# trainer names itself in its first lines ("[rank1]:" prefixes from torch.distributed).
_TORCHRUN_RANK = re.compile(r"^\s*rank\s*:\s*(\d+) \(local_rank")
_WORKER_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:")


def _where(tb: Traceback, lines: list[LogLine], job_id: str) -> str:
    """' on node2 (node rank 1, global rank 1)': where the traceback came from, as far as the logs tell."""
    if tb.task is None:
        return ""
    members = slurm.job_members(job_id)
    hosts = _hosts(members[0]) if members else []
    host = hosts[tb.task] if tb.task < len(hosts) else f"task {tb.task}"
    rank = next((m.group(1) for line in lines if line.task == tb.task
                 for m in [_TORCHRUN_RANK.match(line.text) or _WORKER_PREFIX.match(line.text)]
                 if m and (m.re is _TORCHRUN_RANK or "Traceback" in line.text)), None)
    return f" on {host} (node rank {tb.task}" + (f", global rank {rank})" if rank else ")")
