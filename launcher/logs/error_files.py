"""The first failure of a job, from torch elastic's error files (read without importing torch).

The trainer's entry point is decorated with torch's `errors.record`: an exception on any rank writes
TORCHELASTIC_ERROR_FILE, which torchrun points into `--log-dir <run_dir>/torchelastic/<host>`:

    <run_dir>/torchelastic/<host>/<job_id>_<random>/attempt_0/<local_rank>/error.json
        {"message": {"message": "ValueError: ...", "extraInfo": {"py_callstack": "Traceback ...", "timestamp": "..."}}}
    .../<local_rank>/hpcft-worker.json   the trainer's own note: global rank, node rank, host, world size, restart

The earliest error file by time is the first failure; the others are summarised by kind (NCCL timeout, ...).
The same report comes from the log scan (log_scan.py) when there are no error files.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hpcft.core.protocol import TORCHELASTIC_DIR, WORKER_NOTE

ERROR_DIR = TORCHELASTIC_DIR


@dataclass
class Failure:
    """One rank's failure: where it happened and what it raised."""

    exception: str  # "InjectedFault: ..." (the exception's last line)
    traceback: str
    rank: int | None = None  # global rank
    node_rank: int | None = None  # the Slurm task (SLURM_PROCID), the label in the logs
    host: str = ""
    timestamp: float | None = None
    source: str = ""

    @property
    def kind(self) -> str:
        return failure_kind(self.exception)


@dataclass
class FailureReport:
    first: Failure
    others: list[Failure] = field(default_factory=list)  # the ranks that failed after the first, with an error
    world_size: int | None = None
    origin: str = "error files"  # or "log scan"

    def others_summary(self) -> str:
        """'3 other ranks failed after it: 2 NCCL timeouts, 1 stopped by a signal (no error of its own)'."""
        kinds = Counter(f.kind for f in self.others)
        silent = 0
        if self.world_size is not None:
            silent = max(0, self.world_size - 1 - len(self.others))
        total = len(self.others) + silent
        if total == 0:
            return "no other rank failed"
        parts = [f"{count} {_plural(kind, count)}" for kind, count in kinds.most_common()]
        if silent:
            parts.append(f"{silent} stopped by a signal (no error of {'its' if silent == 1 else 'their'} own)")
        return f"{total} other rank{'s' if total != 1 else ''} failed after it: {', '.join(parts)}"


_PLURALS = {"NCCL timeout": "NCCL timeouts", "lost peer": "lost peers", "out of memory": "out of memory"}


def _plural(kind: str, count: int) -> str:
    return kind if count == 1 else _PLURALS.get(kind, kind)


def failure_kind(exception: str) -> str:
    """A short name for what a rank died of, from its exception line."""
    lowered = exception.lower()
    if "watchdog caught collective operation timeout" in lowered or ("nccl" in lowered and "timeout" in lowered):
        return "NCCL timeout"
    if "got signal: 15" in lowered or "sigterm" in lowered:
        return "SIGTERM"
    if "connection closed by peer" in lowered or "connection reset by peer" in lowered or "broken pipe" in lowered:
        return "lost peer"
    if "out of memory" in lowered or lowered.startswith("torch.outofmemoryerror"):
        return "out of memory"
    name = exception.split(":", 1)[0].strip()
    return name.rsplit(".", 1)[-1] or "error"


def format_report(report: FailureReport, job_id: str) -> str:
    first = report.first
    where = []
    if first.rank is not None:
        where.append(f"global rank {first.rank}")
    if first.host:
        where.append(f"on {first.host}")
    if first.node_rank is not None:
        where.append(f"(node rank {first.node_rank})")
    when = ""
    if first.timestamp is not None:
        import time

        when = time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(first.timestamp))
    lines = [
        f"first failure of job {job_id}: {' '.join(where) or 'unknown rank'}{when} (from the {report.origin}: "
        f"{first.source})",
        first.traceback.rstrip("\n"),
        report.others_summary(),
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reading the files


@dataclass
class _Entry:
    failure: Failure
    restart: int
    order: tuple[float, int]


def read_error_files(run_dir: Path, job_id: str) -> FailureReport | None:
    """The report from the error files of the job's latest allocation, or None when it left none."""
    base = job_id.split("_")[0]
    entries: list[_Entry] = []
    world_sizes: list[int] = []
    for error_file in sorted((run_dir / ERROR_DIR).glob(f"*/{base}_*/attempt_*/*/error.json")):
        entry = _read_one(error_file)
        if entry is not None:
            entries.append(entry)
    for note_file in (run_dir / ERROR_DIR).glob(f"*/{base}_*/attempt_*/*/{WORKER_NOTE}"):
        note = _read_json(note_file)
        if isinstance(note.get("world_size"), int):
            world_sizes.append(note["world_size"])
    if not entries:
        return None
    latest = max(e.restart for e in entries)
    entries = sorted((e for e in entries if e.restart == latest), key=lambda e: e.order)
    return FailureReport(
        entries[0].failure, [e.failure for e in entries[1:]], max(world_sizes) if world_sizes else None, "error files"
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_one(error_file: Path) -> _Entry | None:
    data = _read_json(error_file)
    message = data.get("message")
    if isinstance(message, str):  # the format torch documents for errors written by other tools
        text, extra = message, {}
    elif isinstance(message, dict):
        text, extra = str(message.get("message", "")), message.get("extraInfo") or {}
    else:
        return None
    note = _read_json(error_file.parent / WORKER_NOTE)
    # <host>/<job>_<random>/attempt_<n>/<local_rank>/error.json
    host = str(note.get("host") or error_file.parents[3].name)
    try:
        stamp = float(extra.get("timestamp"))
    except (TypeError, ValueError):
        stamp = None
    try:
        mtime_ns = error_file.stat().st_mtime_ns
    except OSError:
        mtime_ns = 0
    callstack = str(extra.get("py_callstack") or "")
    # The traceback's last line names the exception with its module, as the log shows it.
    last = [line for line in (callstack or text).strip().splitlines() if line.strip()]
    failure = Failure(
        exception=last[-1].strip() if last else "unknown error",
        traceback=callstack or text,
        rank=note.get("rank") if isinstance(note.get("rank"), int) else None,
        node_rank=note.get("node_rank") if isinstance(note.get("node_rank"), int) else None,
        host=host,
        timestamp=stamp if stamp is not None else mtime_ns / 1e9,
        source=str(error_file),
    )
    # The timestamp has whole seconds; the file's modification time orders failures within one second.
    order = (float(int(stamp)) if stamp is not None else mtime_ns / 1e9, mtime_ns)
    restart = note.get("restart") if isinstance(note.get("restart"), int) else 0
    return _Entry(failure, restart, order)
