"""How much data one epoch has, for `hpcft plan`: from the newest prepared dataset in dataset_prepared_path when
there is one, else estimated from the local files (size / ~4 characters per token); unknown when the files are
not readable on this machine."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from hpcft.launcher.config import Job

CHARS_PER_TOKEN = 4.0  # a rough figure for English text with modern BPE tokenizers


@dataclass(frozen=True)
class DataSize:
    """How many rows (and tokens) one epoch has, and how that was found."""

    rows: int | None
    tokens: int | None
    source: str


def dataset_size(job: Job) -> DataSize:
    """From the newest prepared dataset in dataset_prepared_path when there is one, else estimated from the local
    files (size / ~4 characters per token); unknown when the files are not readable here."""
    cfg = job.cfg
    root = Path(cfg.dataset_prepared_path or Path(cfg.output_dir) / "last_run_prepared")
    stats = (
        sorted(root.glob("*/hpcft_stats.json"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    )
    for path in stats:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows = data.get("train_rows") or data.get("train_samples")
        if rows:
            return DataSize(int(rows), data.get("train_tokens"), f"prepared dataset {path.parent}")
    samples = chars = 0
    missing = []
    for entry in cfg.datasets:
        files = entry.data_files if entry.data_files is not None else entry.path
        paths = [Path(p) for p in ([files] if isinstance(files, str) else files)]
        for path in paths:
            found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            if not found or not all(p.is_file() for p in found):
                missing.append(str(path))
                continue
            for file in found:
                lines, size = _count_lines(file)
                samples, chars = samples + lines, chars + size
    if missing or not samples:
        return DataSize(
            None,
            None,
            "unknown: datasets not readable here (" + ", ".join(missing[:2]) + ")"
            if missing
            else "unknown: no dataset rows found",
        )
    tokens = int(chars / CHARS_PER_TOKEN)
    if cfg.sample_packing:
        rows = max(1, math.ceil(tokens / cfg.sequence_len))
        return DataSize(
            rows,
            tokens,
            f"estimated from the files: {samples:,} samples, ~{tokens:,} tokens "
            f"(~{CHARS_PER_TOKEN:.0f} characters per token), packed",
        )
    return DataSize(
        samples,
        tokens,
        f"estimated from the files: {samples:,} samples, "
        f"~{tokens:,} tokens (~{CHARS_PER_TOKEN:.0f} characters per token)",
    )


def _count_lines(path: Path, sample: int = 16 * 2**20) -> tuple[int, int]:
    """(lines, bytes) of a text file; past `sample` bytes the line count is extrapolated from the first part."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(sample)
    lines = head.count(b"\n") + (0 if head.endswith(b"\n") or not head else 1)
    if size > len(head) and head:
        lines = int(lines * size / len(head))
    return lines, size
