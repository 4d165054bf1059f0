"""Load -> format -> filter -> shuffle -> split -> pack the configured datasets, cached on a shared filesystem.

The cache lives in `dataset_prepared_path/<key>/`; the key (core/dataset_cache.py, torch-free so that the login
node can tell whether a preprocessing job is needed) hashes the config fields that change the result, the CONTENT
of every local input file and the tokenizer's files, so an edited file or template never reuses a stale cache.
Exactly one process builds it: the others block on an flock (dataset_prepared_path/.<key>.lock) (works across nodes on a
shared filesystem with flock support: Lustre mounted with -o flock, NFSv4, GPFS) and then load what it wrote.
The cache is written to a temporary folder and renamed into place, so a half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from hpcft.core import dataset_cache
from hpcft.core.dataset_cache import file_lock, prepared_root
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.data_sources import entry_name, load_raw_dataset
from hpcft.trainer.data.deduplicate import deduplicate
from hpcft.trainer.data.formats import STATUSES
from hpcft.trainer.data.packing import pack_dataset, pad_to_multiple
from hpcft.trainer.objectives import objective_for

__all__ = ["cache_key", "file_lock", "prepare_datasets", "prepared_root", "run_preprocess"]


@dataclass
class PreparedData:
    """The datasets the trainer uses, and what happened to the rows on the way."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    stats: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    """Print on global rank 0 only (torchrun sets RANK)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"[hpcft data] {message}", flush=True)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides token ids: the vocabulary/merges, special tokens and chat template."""
    from hpcft.trainer.model.multimodal_model import text_tokenizer

    tokenizer = text_tokenizer(tokenizer)  # a processor's tokenizer (processor_type)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without truncation/padding: calling the tokenizer changes those, not the ids
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        vocab = json.dumps(state, sort_keys=True)
    else:
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [
        vocab,
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
        str(tokenizer.chat_template or ""),
        type(tokenizer).__name__,
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def cache_key(cfg: TrainConfig, tokenizer: Any) -> str:
    """The prepared-cache key: launcher/dataset_cache.cache_key (torch-free, so the login node computes the same
    key from the same files), or, where the tokenizer's files are not found, one from the loaded tokenizer."""
    key = dataset_cache.cache_key(cfg)
    if key is not None:
        return key
    fallback = {"key_without_tokenizer_files": tokenizer_fingerprint(tokenizer), "config": cfg.training_dict()}
    return hashlib.sha256(json.dumps(fallback, sort_keys=True, default=str).encode()).hexdigest()[:20]


@contextmanager
def _progress_bars_on_rank0_only() -> Iterator[None]:
    """Whichever rank wins the lock builds; only rank 0 draws datasets' progress bars (restored afterwards)."""
    was_enabled = datasets.is_progress_bar_enabled()
    if os.environ.get("RANK", "0") != "0":
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _tokenize_group(
    cfg: TrainConfig, tokenizer: Any, group: list[DatasetConfig], where: str, counts: Counter
) -> datasets.Dataset:
    parts = []
    for index, ds in enumerate(group):
        name = entry_name(where, index, ds)
        raw = load_raw_dataset(ds, where, index, seed=cfg.seed)
        # Progress in a job's log, where the libraries' bars are off (trainer/reporting/progress.py): say what starts.
        log(f"{name}: tokenizing {len(raw)} rows ...")
        tokenized, entry_counts = objective_for(cfg).tokenize(raw, ds, cfg, tokenizer, name, cfg.dataset_processes)
        log(f"{name}: {len(raw)} rows -> " + ", ".join(f"{s} {entry_counts[s]}" for s in STATUSES))
        counts.update(entry_counts)
        parts.append(tokenized)
    merged = datasets.concatenate_datasets(parts)
    if len(merged) == 0:
        raise ConfigError(
            f"{where}: no sample is left after formatting ({dict(counts)}); check sequence_len, "
            "roles_to_train and the data"
        )
    return merged


def _val_size(value: float) -> int | float:
    """axolotl: val_set_size > 1 is a number of rows, otherwise a fraction."""
    return int(value) if value > 1 else float(value)


def _token_count(dataset: datasets.Dataset) -> int:
    """Tokens in a split: input_ids for SFT; prompt plus every answer for preference rows."""
    columns = [c for c in dataset.column_names if c.endswith("_ids")]
    return sum(len(ids) for column in columns for ids in dataset[column])


def build_datasets(cfg: TrainConfig, tokenizer: Any) -> PreparedData:
    """Do the work, without any cache: load, format, drop, shuffle, split, pack."""
    counts: Counter = Counter()
    train = _tokenize_group(cfg, tokenizer, cfg.datasets, "datasets", counts)
    # curriculum_sampling keeps the data's order (axolotl shuffles a lone dataset only without it).
    if cfg.shuffle_merged_datasets and not (cfg.curriculum_sampling and len(cfg.datasets) == 1):
        train = train.shuffle(seed=cfg.seed)
    duplicates = 0
    if cfg.dataset_exact_deduplication:  # before the split, as axolotl: no duplicate across train and eval either
        train, seen, duplicates = deduplicate(train)
        log(f"dataset_exact_deduplication: dropped {duplicates} duplicate training samples")
    eval_ds = None
    if cfg.test_datasets:
        eval_ds = _tokenize_group(cfg, tokenizer, cfg.test_datasets, "test_datasets", Counter())
        if cfg.dataset_exact_deduplication:
            # axolotl: evaluation data against itself; with rl also against the training rows.
            eval_ds, _, dropped = deduplicate(eval_ds, seen if objective_for(cfg).eval_dedup_against_train else None)
            log(f"dataset_exact_deduplication: dropped {dropped} duplicate evaluation samples")
            if len(eval_ds) == 0:
                log("dataset_exact_deduplication: every evaluation sample is a training sample; no evaluation")
                eval_ds = None
    elif cfg.val_set_size:
        split = train.train_test_split(test_size=_val_size(cfg.val_set_size), shuffle=False, seed=cfg.seed)
        train, eval_ds = split["train"], split["test"]
    stats: dict[str, Any] = {s: counts[s] for s in STATUSES}
    if cfg.dataset_exact_deduplication:
        stats["dropped_duplicates"] = duplicates
    stats.update(
        train_samples=len(train),
        eval_samples=len(eval_ds) if eval_ds is not None else 0,
        train_tokens=_token_count(train),
    )
    if cfg.sample_packing:
        log(f"packing {len(train)} samples into rows of {cfg.sequence_len} tokens ...")
        train = pack_dataset(train, cfg.sequence_len, sequential=bool(cfg.sample_packing_sequentially))
        stats.update(
            train_rows=len(train), packing_efficiency=round(stats["train_tokens"] / (len(train) * cfg.sequence_len), 4)
        )
    if eval_ds is not None and (cfg.sample_packing if cfg.eval_sample_packing is None else cfg.eval_sample_packing):
        eval_ds = pack_dataset(eval_ds, cfg.sequence_len, sequential=bool(cfg.sample_packing_sequentially))
    return PreparedData(train=train, eval=eval_ds, stats=stats)


def _save(prepared: PreparedData, final: Path) -> None:
    tmp = final.parent / f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}"
    try:
        splits = {"train": prepared.train, **({"eval": prepared.eval} if prepared.eval is not None else {})}
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        (tmp / "hpcft_stats.json").write_text(json.dumps(prepared.stats, indent=1))
        os.rename(tmp, final)  # atomic on one filesystem: readers see no cache or a whole one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path) -> PreparedData:
    saved = datasets.load_from_disk(str(path))
    stats = json.loads((path / "hpcft_stats.json").read_text())
    return PreparedData(train=saved["train"], eval=saved["eval"] if "eval" in saved else None, stats=stats)


def prepare_datasets(
    cfg: TrainConfig, tokenizer: Any, world_size: int | None = None, global_batch_size: int | None = None
) -> PreparedData:
    """The train/eval datasets for a config, from the cache when it is current, else built once and cached.

    stats: counts of kept and dropped samples, tokens, packing efficiency, `cache` ("built" or "loaded") and `key`.
    The train split is padded (repeating rows) to a multiple of the global batch (default: world_size x
    micro_batch_size x gradient_accumulation_steps) so every rank gets the same number of batches, and so its
    length (hence the sampler's order) stays the same when a resume on another world size keeps the global batch
    (trainer/loop/elastic.py); world_size defaults to env WORLD_SIZE.
    """
    key = cache_key(cfg, tokenizer)
    root = prepared_root(cfg)
    final = root / key
    started, status = time.monotonic(), "loaded"
    if not final.is_dir():
        with file_lock(root / f".{key}.lock"):  # per key: unrelated jobs sharing the folder never wait
            if not final.is_dir():  # another process may have built it while this one waited
                log(f"preparing datasets into {final}")
                with _progress_bars_on_rank0_only():
                    built = build_datasets(cfg, tokenizer)
                    built.stats["key"] = key
                    _save(built, final)
                status = "built"
    prepared = _load(final)  # also after building: every rank trains on the same memory-mapped files
    prepared.stats["cache"] = status
    world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    multiple = global_batch_size or world_size * cfg.micro_batch_size * cfg.gradient_accumulation_steps
    prepared.train = pad_to_multiple(prepared.train, multiple)
    prepared.stats["train_rows_per_rank"] = len(prepared.train) // world_size
    log(
        f"datasets {prepared.stats['cache']} in {time.monotonic() - started:.1f}s from {final}: "
        + json.dumps({k: v for k, v in prepared.stats.items() if k not in ("cache", "key")})
    )
    return prepared


def run_preprocess(config_path: str | Path, processes: int | None = None) -> PreparedData:
    """`python -m hpcft.trainer preprocess train.yaml`: fill the prepared-dataset cache (no GPU needed). processes:
    the CPUs of a preprocessing job, used unless the config sets dataset_processes itself."""
    from hpcft.core.yaml_config import load_train_yaml
    from hpcft.trainer.model.loading import load_training_tokenizer  # the training's, so it finds this cache

    cfg = load_train_yaml(config_path)
    if cfg.streaming:  # the launcher queues no preprocessing job for a stream; run by hand, it says so
        log("streaming: the training data is read while training; nothing to prepare")
        return PreparedData(train=datasets.Dataset.from_dict({}), eval=None, stats={"streaming": True})
    if processes and not cfg.dataset_processes:
        cfg = cfg.model_copy(update={"dataset_processes": processes})
    prepared = prepare_datasets(cfg, load_training_tokenizer(cfg), world_size=1)
    from hpcft.trainer.reporting.eval_downloads import fetch_eval_datasets  # the benchmarks' datasets, while on a CPU

    fetch_eval_datasets(cfg)
    return prepared
