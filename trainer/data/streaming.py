"""Streamed training data (streaming: true, pretraining_dataset): read, tokenized and packed on the fly.

Nothing is prepared ahead or cached: the rows are a `datasets.IterableDataset` that formats each row as its type says,
drops what a prepared dataset would drop, shuffles within a buffer of streaming_multipack_buffer_size rows and packs
each buffer's samples into rows of sequence_len. Ranks: accelerate (with dispatch_batches off, see
`streaming_arguments`) gives each rank its own files when the stream has at least as many files (shards) as there
are ranks; with fewer files every rank reads the whole stream and keeps every world_size-th batch. Resume: the
Trainer re-reads the stream from its start and skips the batches already trained; the shuffle buffer is seeded, so
they are the batches the interrupted run trained on (reading them again costs time, not data).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from hpcft.core.dataset_cache import is_saved_dataset, local_files
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.data_sources import entry_name, file_builder, hub_reachable, load_saved_dataset
from hpcft.trainer.data.formats import KEPT, make_formatter, sample_status
from hpcft.trainer.data.packing import pack_columns, pack_dataset

DEFAULT_BUFFER = 10_000  # axolotl's streaming_multipack_buffer_size default
SAVED_DATASET_SHARDS = 64  # a save_to_disk folder streamed in this many shards (at most one per row)


def streaming_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """TrainingArguments for a stream: every rank reads (its share of) the stream itself, instead of rank 0 reading
    all of it and sending each rank its batches (accelerate's default for iterable datasets)."""
    if not cfg.streaming:
        return {}
    return {"accelerator_config": {"dispatch_batches": False, "split_batches": False}}


def open_stream(ds: DatasetConfig, where: str = "datasets", index: int = 0) -> datasets.IterableDataset:
    """One entry's raw rows as a stream: local files, a save_to_disk folder or a Hub dataset; `skip` applied."""
    name = entry_name(where, index, ds)
    path = Path(ds.path).expanduser()
    files = local_files(ds, where, index)
    if path.is_dir() and is_saved_dataset(path):
        loaded = load_saved_dataset(path, ds, name)
        stream = loaded.to_iterable_dataset(num_shards=max(1, min(len(loaded), SAVED_DATASET_SHARDS)))
    elif files:
        builder = file_builder(files, ds, name)
        stream = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=True)
    else:
        if not hub_reachable():
            raise ConfigError(
                f"{name} is not a local file and the Hugging Face Hub is unreachable from this machine; a stream "
                "is read while training, so point path at local files or a folder the nodes can read"
            )
        stream = datasets.load_dataset(
            ds.path, name=ds.name, split=ds.split, revision=ds.revision, data_files=ds.data_files, streaming=True
        )
    return stream.skip(ds.skip) if ds.skip else stream


def _columns(stream: datasets.IterableDataset, name: str) -> list[str]:
    """The stream's column names (a JSON stream does not know them before its first row)."""
    if stream.column_names is not None:
        return list(stream.column_names)
    first = next(iter(stream.take(1)), None)
    if first is None:
        raise ConfigError(f"{name}: the dataset has no rows")
    return list(first)


def tokenized_stream(
    stream: datasets.IterableDataset, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str
) -> datasets.IterableDataset:
    """Samples (input_ids, labels) of one entry's rows, formatted as its type says; the samples a prepared dataset
    would drop (too long, too short, nothing to train) are dropped here too."""
    formatter = make_formatter(ds, cfg, tokenizer, name)

    def format_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "labels": []}
        for position, index in enumerate(indices):
            row = {key: values[position] for key, values in batch.items()}
            for ids, labels in formatter(row, index + 1):
                if sample_status(ids, labels, cfg.sequence_len, cfg.min_sample_len) == KEPT:
                    out["input_ids"].append(ids)
                    out["labels"].append(labels)
        return out

    return stream.map(format_batch, batched=True, with_indices=True, remove_columns=_columns(stream, name))


def training_stream(cfg: TrainConfig, tokenizer: Any) -> datasets.IterableDataset:
    """The training rows of a streaming config: every entry formatted, merged, shuffled in a buffer, packed."""
    parts = []
    for index, ds in enumerate(cfg.datasets):
        name = entry_name("datasets", index, ds)
        parts.append(tokenized_stream(open_stream(ds, "datasets", index), ds, cfg, tokenizer, name))
    stream = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    buffer = cfg.streaming_multipack_buffer_size or DEFAULT_BUFFER
    if cfg.shuffle_merged_datasets and not cfg.curriculum_sampling:
        stream = stream.shuffle(seed=cfg.seed, buffer_size=buffer)
    if cfg.sample_packing:
        sequential = bool(cfg.sample_packing_sequentially)

        def pack(batch: dict[str, list]) -> dict[str, list]:
            return pack_columns(batch["input_ids"], batch["labels"], cfg.sequence_len, sequential)

        stream = stream.map(pack, batched=True, batch_size=buffer, remove_columns=["input_ids", "labels"])
    return stream


def streaming_datasets(cfg: TrainConfig, tokenizer: Any) -> tuple[datasets.IterableDataset, datasets.Dataset | None]:
    """(training stream, evaluation dataset): test_datasets are small, so they are tokenized whole (not cached)."""
    from hpcft.trainer.data.prepare import _tokenize_group  # the same tokenizing as a prepared dataset's

    eval_ds = None
    if cfg.test_datasets:
        eval_ds = _tokenize_group(cfg, tokenizer, cfg.test_datasets, "test_datasets", Counter())
        if cfg.sample_packing if cfg.eval_sample_packing is None else cfg.eval_sample_packing:
            eval_ds = pack_dataset(eval_ds, cfg.sequence_len, sequential=bool(cfg.sample_packing_sequentially))
    return training_stream(cfg, tokenizer), eval_ds
