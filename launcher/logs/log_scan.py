"""The first failure of a job from its log files alone, streamed: the fallback when there are no torch elastic
error files (a crash before the trainer started, a job from another tool).

Blocks without a traceback are only searched for srun's task failures (one C-level search per block); the few
blocks with a traceback in them, or inside one, are read line by line. Memory holds one block and the
tracebacks found (the first one of each rank in full, the others as their exception line only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hpcft.launcher.logs.error_files import Failure, FailureReport
from hpcft.launcher.logs.logstream import FileCursor

_TRACEBACK = b"Traceback (most recent call last):"
_SRUN_FAILED = re.compile(rb"srun: error: (\S+): tasks? (\d+)(?:-\d+)?: (?:Exited|Killed|Terminated)")
# One line: optional srun label, optional torch worker prefix ("[rank3]:", "[default3]:"), the text.
_LINE = re.compile(rb"\n(?: *(\d+): )?(?:\[(?:rank|default)(\d+)\]: ?)?([^\n]*)")
# torchrun's failure summary names the global rank of the worker that failed on its node.
_TORCHRUN_RANK = re.compile(rb"^\s*rank\s*:\s*(\d+) \(local_rank: ?\d+\)")
MAX_TRACEBACK_LINES = 400
_AGENT_ERRORS = ("torch.distributed.elastic.",)


@dataclass
class _Scan:
    open: dict[tuple[int | None, int | None], list[str]] = field(default_factory=dict)
    found: list[Failure] = field(default_factory=list)  # in the order the logs show them
    full: set[tuple[int | None, int | None]] = field(default_factory=set)
    srun_failed: tuple[str, int] | None = None  # (host, task) of the first task srun reports as failed
    task_rank: dict[int, int] = field(default_factory=dict)


def scan_logs(
    paths: list[Path],
    hosts: list[str] | None = None,
    world_size: int | None = None,
    file_tasks: dict[Path, int] | None = None,
) -> FailureReport | None:
    """The first traceback of the first task srun reports as failed (else the first traceback at all).

    file_tasks names the task of files written by one task only (submitit's <job>_<task>_log.err)."""
    scan = _Scan()
    for path in paths:
        cursor = FileCursor(path)
        fixed = (file_tasks or {}).get(path)
        for block in cursor.blocks(final=True):
            _scan_block(scan, b"\n" + block[:-1], str(path), fixed)
        scan.open.clear()  # a traceback does not continue into another file
    # torch prefixes its workers' lines with [rankN]:; where it did, an unprefixed traceback is torchrun's own
    # (ChildFailedError, SignalException, a lost rendezvous store): what happened to its workers, not a rank's
    # failure. Without prefixes, torchrun's tracebacks are known by their exception's module.
    workers = [f for f in scan.found if f.rank is not None]
    if workers:
        scan.found = workers
    else:
        scan.found = [f for f in scan.found if not f.exception.startswith(_AGENT_ERRORS)] or scan.found
    if not scan.found:
        return None
    for failure in scan.found:
        if failure.rank is None and failure.node_rank in scan.task_rank:
            failure.rank = scan.task_rank[failure.node_rank]
        if hosts and failure.node_rank is not None and failure.node_rank < len(hosts):
            failure.host = hosts[failure.node_rank]
    first = scan.found[0]
    if scan.srun_failed is not None:
        host, task = scan.srun_failed
        first = next((f for f in scan.found if f.node_rank == task), first)
        if first.node_rank == task and not first.host:
            first.host = host
    # One failure per rank: torchrun repeats a worker's traceback in its own summary.
    seen = {(first.node_rank, first.rank)}
    others = []
    for failure in scan.found:
        key = (failure.node_rank, failure.rank)
        if failure is not first and key not in seen:
            seen.add(key)
            others.append(failure)
    return FailureReport(first, others, world_size, "log scan")


def _scan_block(scan: _Scan, data: bytes, source: str, fixed_task: int | None) -> None:
    if scan.srun_failed is None and b"srun: error:" in data:
        match = _SRUN_FAILED.search(data)
        if match:
            scan.srun_failed = (match.group(1).decode(errors="replace"), int(match.group(2)))
    if not scan.open and _TRACEBACK not in data and b"(local_rank:" not in data:
        return
    for match in _LINE.finditer(data):
        task = int(match.group(1)) if match.group(1) is not None else fixed_task
        worker = int(match.group(2)) if match.group(2) is not None else None
        text = match.group(3).decode(errors="replace").rstrip("\r")
        key = (task, worker)
        rank_line = _TORCHRUN_RANK.match(match.group(3))
        if rank_line and task is not None:
            scan.task_rank.setdefault(task, int(rank_line.group(1)))
        if _TRACEBACK.decode() in text:
            # "traceback : Traceback ..." in torchrun's summary: the traceback starts at the word.
            scan.open[key] = [text[text.index(_TRACEBACK.decode()) :]]
            continue
        lines = scan.open.get(key)
        if lines is None:
            continue
        lines.append(text)
        if _ends_traceback(lines, text) or len(lines) >= MAX_TRACEBACK_LINES:
            del scan.open[key]
            keep = key not in scan.full
            scan.full.add(key)
            scan.found.append(
                Failure(
                    exception=text.strip(),
                    traceback=_dedent(lines) if keep else "",
                    rank=worker,
                    node_rank=task,
                    source=source,
                )
            )


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def _ends_traceback(lines: list[str], text: str) -> bool:
    """The exception line ("ValueError: ...") is indented two less than the "File" lines: not at all in a
    traceback Python prints, two spaces in the one torchrun repeats in its failure summary."""
    if not text.strip() or len(lines) < 3:
        return False
    return _indent(text) <= max(0, _indent(lines[1]) - 2)


def _dedent(lines: list[str]) -> str:
    shift = max(0, _indent(lines[1]) - 2) if len(lines) > 1 else 0
    return "\n".join([lines[0], *(line[shift:] if _indent(line) >= shift else line for line in lines[1:])])
