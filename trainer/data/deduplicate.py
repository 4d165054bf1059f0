"""dataset_exact_deduplication: drop tokenized samples identical to one seen before (axolotl's exact dedup)."""

from __future__ import annotations

import hashlib
import json

import datasets


def row_hash(row: dict) -> str:
    """A hash of every column of a row (input_ids and labels, or a preference row's columns)."""
    return hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()


def deduplicate(dataset: datasets.Dataset, seen: set[str] | None = None) -> tuple[datasets.Dataset, set[str], int]:
    """Keep the first of identical rows, and no row whose hash is in `seen` (the training rows, when deduplicating
    evaluation data against them); return the rows kept, every hash seen and how many were dropped."""
    seen = set() if seen is None else set(seen)
    keep = []
    for index, row in enumerate(dataset):
        digest = row_hash(row)
        if digest not in seen:
            seen.add(digest)
            keep.append(index)
    dropped = len(dataset) - len(keep)
    return (dataset.select(keep) if dropped else dataset), seen, dropped
